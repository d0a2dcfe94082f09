// The call page's script: a JWT (from the widget API's OpenID token and the SFU's /get_token,
// or from the URL fragment in test mode), then the SFU's signalling on /ws: join, publish
// (camera and microphone, only what the token allows), subscribe, and a <video> per received
// track. Self-contained: no libraries, no CDN. Stats go to window.sferumCallStats and to
// data-* attributes of <body> so that tests (and a curious teacher) can see media flowing.
"use strict";

(function () {
  const query = new URLSearchParams(window.location.search);
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const SLOT_ID = "m.call#ROOM"; // MatrixRTC's legacy slot: one call per room
  let sfuUrl = null; // where /get_token sent us (a broadcast's viewer: an edge); null: here
  const widget = window.sferumWidget("ru.sferum.call"); // the widget API (widget-api.js)

  const statusEl = document.getElementById("status");
  const localEl = document.getElementById("local");
  const remoteEl = document.getElementById("remote");
  const cameraButton = document.getElementById("camera");
  const microphoneButton = document.getElementById("microphone");
  const handButton = document.getElementById("hand");
  const peopleEl = document.getElementById("people");
  const stats = { state: "loading", framesDecoded: 0, framesEncoded: 0, bytesSent: 0, remoteVideos: 0 };
  window.sferumCallStats = stats;

  function status(state, text) {
    stats.state = state;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  // -- the token -----------------------------------------------------------------------------

  async function widgetToken() {
    const roomId = query.get("room");
    const userId = query.get("user");
    const deviceId = query.get("device");
    if (!widget.embedded) { status("no-host", "Откройте звонок в комнате мессенджера."); return null; }
    if (!roomId || !userId || !deviceId) { status("error", "Неверная ссылка."); return null; }
    status("openid", "Проверка входа…");
    const openid = await widget.openId();
    if (!openid) { status("denied", "Нет доступа: приложение не подтвердило вход."); return null; }
    let response;
    try {
      response = await fetch("get_token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "omit",
        body: JSON.stringify({
          room_id: roomId,
          slot_id: SLOT_ID,
          openid_token: {
            access_token: openid.access_token,
            token_type: openid.token_type || "Bearer",
            matrix_server_name: openid.matrix_server_name,
            expires_in: openid.expires_in || 3600,
          },
          // One member per device: a reload replaces the old socket instead of adding one.
          member: { id: deviceId, claimed_user_id: userId, claimed_device_id: deviceId },
        }),
      });
    } catch (e) {
      status("error", "Сервер звонков недоступен.");
      return null;
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      status(response.status === 401 || response.status === 403 ? "denied" : "error",
        "Нет доступа к звонку" + (body.error ? ": " + body.error : "."));
      return null;
    }
    sfuUrl = body.url; // a broadcast's viewers are sent to an edge
    return body.jwt;
  }

  function claims(jwt) {
    // Read, not verified: the SFU verifies; the page only learns the room and what to ask for.
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = part + "===".slice((part.length + 3) % 4);
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0))));
  }

  // -- media ---------------------------------------------------------------------------------

  function gathered(pc) {
    // The SFU (aiortc) takes no trickled candidates: every description goes out complete.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000); // send what we have rather than wait forever
    });
  }

  function mediaElement(track, parent, muted) {
    const node = document.createElement(track.kind === "video" ? "video" : "audio");
    node.autoplay = true;
    node.playsInline = true;
    node.muted = muted;
    node.srcObject = new MediaStream([track]);
    parent.appendChild(node);
    node.play().catch(() => { /* autoplay refused: the element starts on the next gesture */ });
    return node;
  }

  let ws = null;
  let grant = null;
  let iceServers = []; // the deployment's TURN, from `joined`
  let me = null;
  let publisher = null;
  let subscriber = null;
  let handRaised = false;

  function signal(type, fields) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(Object.assign({ type: type }, fields || {})));
  }

  function toggleButton(button, track) {
    button.hidden = false;
    button.setAttribute("aria-pressed", String(!track.enabled));
    button.onclick = () => {
      track.enabled = !track.enabled;
      button.setAttribute("aria-pressed", String(!track.enabled));
      signal("mute", { kind: track.kind, muted: !track.enabled });
    };
  }

  async function publish(want) {
    // The first call starts publishing; a later one (the camera the teacher allowed) adds its
    // track to the same connection and offers again: the SFU renegotiates.
    if (!want.audio && !want.video) return;
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia(want);
    } catch (e) {
      status("no-devices", "Нет доступа к камере или микрофону: только просмотр.");
      return;
    }
    if (!publisher) publisher = new RTCPeerConnection({ iceServers: iceServers, bundlePolicy: "max-bundle" });
    for (const track of media.getTracks()) {
      publisher.addTransceiver(track, { direction: "sendonly", streams: [media] });
      if (track.kind === "video") mediaElement(track, localEl, true);
      toggleButton(track.kind === "video" ? cameraButton : microphoneButton, track);
    }
    await publisher.setLocalDescription(await publisher.createOffer());
    await gathered(publisher);
    signal("publish", { sdp: publisher.localDescription.sdp });
  }

  function localTrack(kind) {
    if (!publisher) return null;
    const sender = publisher.getSenders().find((s) => s.track && s.track.kind === kind);
    return sender ? sender.track : null;
  }

  async function onModerated(action) {
    // The SFU enforces each of these; the page follows so that the pupil sees why.
    if (action === "allow_camera" && !localTrack("video")) {
      status("joined", "Учитель разрешил камеру.");
      await publish({ audio: false, video: true });
    } else if (action === "deny_camera" && localTrack("video")) {
      localTrack("video").enabled = false;
      cameraButton.setAttribute("aria-pressed", "true");
      status("joined", "Учитель выключил камеру.");
    } else if (action === "mute" && localTrack("audio")) {
      localTrack("audio").enabled = false;
      microphoneButton.setAttribute("aria-pressed", "true");
      status("joined", "Учитель выключил микрофон.");
    }
  }

  async function answerOffer(sdp) {
    // The first offer starts the subscription; the SFU sends another on the same connection
    // whenever a new publisher's track needs an m-line of its own (renegotiation).
    if (!subscriber) {
      subscriber = new RTCPeerConnection({ iceServers: iceServers, bundlePolicy: "max-bundle" });
      subscriber.addEventListener("track", (event) => {
        mediaElement(event.track, remoteEl, false);
        if (event.track.kind === "video") stats.remoteVideos += 1;
      });
    }
    await subscriber.setRemoteDescription({ type: "offer", sdp: sdp });
    await subscriber.setLocalDescription(await subscriber.createAnswer());
    await gathered(subscriber);
    signal("answer", { sdp: subscriber.localDescription.sdp });
  }

  function moderationButton(label, participant, action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.dataset.action = action;
    button.onclick = () => signal("moderate", { participant: participant.identity, action: action });
    return button;
  }

  function showPeople(list, speakers) {
    // Publishers are named (they are the lesson's members); watchers of a broadcast are not.
    stats.participants = list.length;
    peopleEl.replaceChildren(...list.map((p) => {
      const item = document.createElement("li");
      item.dataset.identity = p.identity;
      item.classList.toggle("speaking", speakers.includes(p.identity));
      const flags = (p.hand_raised ? " ✋" : "") + (p.muted.includes("audio") ? " 🔇" : "");
      item.textContent = (p.identity === me ? "Вы" : p.user || "Зритель") + flags;
      if (grant.roomAdmin && p.identity !== me && p.publishing) {
        const muted = p.muted.includes("audio");
        item.append(
          moderationButton(muted ? "Включить микрофон" : "Выключить микрофон", p, muted ? "unmute" : "mute"),
          moderationButton(p.camera_allowed ? "Запретить камеру" : "Разрешить камеру", p,
            p.camera_allowed ? "deny_camera" : "allow_camera"),
          moderationButton("Удалить", p, "remove"),
        );
      }
      return item;
    }));
  }

  let people = [];
  let speaking = [];

  async function onMessage(msg) {
    switch (msg.type) {
      case "joined":
        me = msg.participant;
        iceServers = msg.ice_servers || [];
        status("joined", "В звонке");
        if (grant.canPublish) {
          const sources = grant.canPublishSources && grant.canPublishSources.length
            ? grant.canPublishSources : ["camera", "microphone", "screen_share"];
          await publish({ audio: sources.includes("microphone"), video: sources.includes("camera") });
          if (!grant.roomAdmin) handButton.hidden = false;
        }
        if (grant.canSubscribe) signal("subscribe");
        break;
      case "answer":
        await publisher.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        break;
      case "offer":
        await answerOffer(msg.sdp);
        break;
      case "participants":
        people = msg.participants;
        showPeople(people, speaking);
        break;
      case "speakers":
        speaking = msg.speakers;
        showPeople(people, speaking);
        break;
      case "moderated":
        await onModerated(msg.action);
        break;
      case "removed":
        status("denied", msg.message || "Звонок завершён.");
        break;
      case "error":
        stats.lastError = msg.message;
        statusEl.title = msg.message;
        if (msg.message.startsWith("join refused")) status("denied", "Нет доступа к звонку.");
        break;
      default:
        break; // future messages
    }
  }

  handButton.onclick = () => {
    handRaised = !handRaised;
    handButton.setAttribute("aria-pressed", String(handRaised));
    signal("hand", { raised: handRaised });
  };

  async function updateStats() {
    if (subscriber) {
      let decoded = 0;
      (await subscriber.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") decoded += s.framesDecoded || 0;
      });
      stats.framesDecoded = decoded;
    }
    if (publisher) {
      let encoded = 0;
      let sent = 0;
      (await publisher.getStats()).forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "video") {
          encoded += s.framesEncoded || 0;
          sent += s.bytesSent || 0;
        }
      });
      stats.framesEncoded = encoded;
      stats.bytesSent = sent;
    }
    document.body.dataset.framesDecoded = String(stats.framesDecoded);
    document.body.dataset.framesEncoded = String(stats.framesEncoded);
  }

  async function main() {
    // Test mode: `#jwt=…` skips the widget API (no homeserver needed to try the media path).
    const jwt = fragment.get("jwt") || await widgetToken();
    if (!jwt) return;
    let video;
    try {
      video = claims(jwt).video;
    } catch (e) {
      status("error", "Неверный токен.");
      return;
    }
    grant = video;
    const url = sfuUrl ? new URL(sfuUrl.replace(/\/?$/, "/ws")) : new URL("ws", window.location.href);
    url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
    url.hash = "";
    url.search = "";
    status("connecting", "Подключение…");
    ws = new WebSocket(url.href);
    let queue = Promise.resolve(); // messages are handled in order, each to the end
    ws.addEventListener("open", () => signal("join", { room: video.room, token: jwt }));
    ws.addEventListener("message", (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      queue = queue.then(() => onMessage(msg)).catch((e) => {
        stats.lastError = String(e);
        status("error", "Ошибка звонка.");
      });
    });
    ws.addEventListener("close", () => {
      if (stats.state !== "denied") status("closed", "Звонок завершён.");
    });
    window.addEventListener("pagehide", () => signal("leave"));
    setInterval(() => { updateStats().catch(() => {}); }, 500);
  }

  main();
})();
