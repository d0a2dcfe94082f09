// The widget side of the Matrix widget API (matrix-widget-api's postMessage protocol), shared by
// the diary mini-app (served by the bridge) and the call page (served by the SFU): answer the
// client's capabilities handshake, then ask it for an OpenID token (`get_openid`), which the
// page's own server checks with the homeserver. Self-contained: no libraries, no CDN.
//
//   const widget = window.sferumWidget("ru.sferum.call");  // at load: the handshake is early
//   if (widget.embedded) { const openid = await widget.openId(); /* null: refused */ }
"use strict";

window.sferumWidget = function (defaultWidgetId) {
  const query = new URLSearchParams(window.location.search);
  const widgetId = query.get("widgetId") || defaultWidgetId;
  let parentOrigin = "*";
  try {
    if (query.get("parentUrl")) parentOrigin = new URL(query.get("parentUrl")).origin;
  } catch (e) { /* keep "*": what we send holds no secret */ }

  const pending = new Map(); // requestId -> resolve, for our fromWidget requests
  let openidRequestId = null;
  let openidResolve = null;
  let counter = 0;
  let capabilitiesDone = null;
  const capabilitiesSettled = new Promise((resolve) => { capabilitiesDone = resolve; });

  function send(action, data) {
    const requestId = widgetId + "-" + Date.now() + "-" + (++counter);
    const message = { api: "fromWidget", widgetId: widgetId, requestId: requestId, action: action, data: data || {} };
    return { requestId: requestId, reply: new Promise((resolve) => {
      pending.set(requestId, resolve);
      window.parent.postMessage(message, parentOrigin);
    }) };
  }

  function reply(request, response) {
    window.parent.postMessage(Object.assign({}, request, { response: response }), parentOrigin);
  }

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent || window.parent === window) return;
    if (parentOrigin !== "*" && event.origin !== parentOrigin) return;
    const msg = event.data;
    if (!msg || typeof msg !== "object" || typeof msg.requestId !== "string") return;
    if (msg.api === "fromWidget" && msg.response !== undefined) {
      const resolve = pending.get(msg.requestId);
      if (resolve) { pending.delete(msg.requestId); resolve(msg.response); }
      return;
    }
    if (msg.api !== "toWidget" || msg.response !== undefined) return;
    switch (msg.action) {
      case "capabilities":
        // get_openid needs no capability: the client asks the user itself.
        reply(msg, { capabilities: [] });
        setTimeout(capabilitiesDone, 1000); // a client that never sends notify_capabilities
        break;
      case "notify_capabilities":
        reply(msg, {});
        capabilitiesDone();
        break;
      case "openid_credentials":
        reply(msg, {});
        if (openidResolve && msg.data && msg.data.original_request_id === openidRequestId) {
          openidResolve(msg.data);
        }
        break;
      default:
        reply(msg, {}); // theme, language, visibility: nothing to do
    }
  });

  async function openId() {
    await capabilitiesSettled;
    const request = send("get_openid", {});
    openidRequestId = request.requestId;
    const later = new Promise((resolve) => { openidResolve = resolve; });
    let answer = await request.reply;
    if (answer && answer.state === "request") answer = await later; // the user is being asked
    if (!answer || answer.state !== "allowed" || !answer.access_token) return null;
    return answer;
  }

  return { embedded: window.parent !== window, openId: openId };
};
