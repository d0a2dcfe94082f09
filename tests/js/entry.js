// The one module the test page loads: LiveKit's JS SDK as `window.LivekitClient`.
export * from "livekit-client";
