// The registration page (/join): a client of this server's own Matrix registration, step by
// step, as synapse_sferum/join.py describes. Every check is the server's; this script only
// walks the steps and says in Russian what the server refused.
(function () {
  "use strict";

  const REGISTER = "/_matrix/client/v3/register";
  // The server's reasons (`ru.sferum.reason`), then its error codes, in the user's words.
  const REASONS = {
    "ru.sferum.link_code_unknown": "Такого кода нет. Проверьте код в приглашении учителя.",
    "ru.sferum.link_code_used": "Этот код уже использован. Если это были не вы, обратитесь к классному руководителю.",
    "ru.sferum.link_code_expired": "Срок действия кода истёк. Попросите у классного руководителя новый.",
    "ru.sferum.person_has_account": "У этого человека уже есть учётная запись. Войдите в приложение со своим логином и паролем.",
    "ru.sferum.person_not_in_directory": "Этого человека нет в списках школы.",
    "ru.sferum.person_disabled": "Школа отключила учётную запись этого человека.",
    "ru.sferum.too_young": "Ребёнок младше возраста, с которого школа выдаёт учётные записи.",
    "ru.sferum.phone_invalid": "Это не номер телефона. Пример: +7 912 345-67-89.",
    "ru.sferum.phone_in_use": "Этот номер уже занят другой учётной записью: один номер — одна учётная запись.",
    "ru.sferum.phone_of_guardian": "Это номер родителя. У ученика должен быть свой номер телефона.",
    "ru.sferum.sms_rate_limited": "На этот номер уже отправлено много SMS. Попробуйте позже.",
    "ru.sferum.sms_school_rate_limited": "Сейчас отправляется слишком много SMS. Попробуйте через несколько минут.",
    "ru.sferum.sms_attempts_exhausted": "Слишком много неверных кодов. Запросите новое SMS.",
  };
  const ERRCODES = {
    M_THREEPID_IN_USE: REASONS["ru.sferum.phone_in_use"],
    M_THREEPID_DENIED: "Этот номер нельзя использовать для этой учётной записи: у ученика должен быть свой номер, не номер родителя.",
    M_THREEPID_AUTH_FAILED: "Код из SMS не подошёл или устарел. Проверьте код или запросите новое SMS.",
    M_LIMIT_EXCEEDED: "Слишком много попыток. Подождите несколько минут и попробуйте снова.",
    M_WEAK_PASSWORD: "Пароль слишком простой. Возьмите длиннее, с буквами и цифрами.",
    M_NOT_FOUND: REASONS["ru.sferum.link_code_unknown"],
  };
  const ROLES = { pupil: "ученик", guardian: "родитель", teacher: "учитель", staff: "сотрудник школы" };

  const state = { code: "", session: null, clientSecret: "", sid: null, submitUrl: null, attempt: 0 };
  const $ = (id) => document.getElementById(id);

  function show(step) {
    for (const section of document.querySelectorAll("section[data-step]")) {
      section.hidden = section.dataset.step !== step;
    }
    document.body.dataset.step = step;
    const input = document.querySelector(`section[data-step="${step}"] input`);
    if (input) input.focus();
  }

  function fail(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function explain(body, status) {
    const reason = body && body["ru.sferum.reason"];
    if (reason && REASONS[reason]) return REASONS[reason];
    if (body && ERRCODES[body.errcode]) return ERRCODES[body.errcode];
    if (status === 0) return "Нет связи с сервером. Проверьте интернет и попробуйте снова.";
    return "Не получилось" + (body && body.error ? ": " + body.error : ".") ;
  }

  async function post(url, body) {
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "omit",
        body: JSON.stringify(body),
      });
      return { status: response.status, body: await response.json().catch(() => ({})) };
    } catch (e) {
      return { status: 0, body: {} };
    }
  }

  function busy(button, work) {
    return async () => {
      button.disabled = true;
      fail("");
      try { await work(); } finally { button.disabled = false; }
    };
  }

  function randomSecret() {
    const bytes = new Uint8Array(18);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // 1. The code: whose is it?
  async function lookUp() {
    const reply = await post("/join/code", { code: $("code").value });
    if (reply.status !== 200) return fail(explain(reply.body, reply.status));
    state.code = reply.body.code;
    $("code").value = state.code;
    $("person-name").textContent = reply.body.name;
    $("person-role").textContent = ROLES[reply.body.role] || reply.body.role;
    show("confirm");
  }

  // 2. Confirmed: the registration starts with the code as its registration token.
  async function confirm() {
    const first = await post(REGISTER, {});
    if (first.status !== 401 || !first.body.session) return fail(explain(first.body, first.status));
    state.session = first.body.session;
    const entered = await post(REGISTER, {
      auth: { type: "m.login.registration_token", token: state.code, session: state.session },
    });
    const done = entered.body.completed || [];
    if (entered.status !== 401 || !done.includes("m.login.registration_token")) {
      return fail(explain(entered.body, entered.status));
    }
    show("phone");
  }

  // 3. The phone: an SMS with a code.
  async function askSms() {
    state.clientSecret = randomSecret();
    state.attempt += 1;
    const reply = await post(REGISTER + "/msisdn/requestToken", {
      client_secret: state.clientSecret,
      country: "RU",
      phone_number: $("phone").value,
      send_attempt: state.attempt,
    });
    if (reply.status !== 200 || !reply.body.sid) return fail(explain(reply.body, reply.status));
    state.sid = reply.body.sid;
    state.submitUrl = reply.body.submit_url;
    $("sms-phone").textContent = "+" + (reply.body.msisdn || $("phone").value);
    $("sms").value = "";
    show("sms");
  }

  // 4. The SMS code; then the server judges the phone against the person (a pupil's own
  // number, one number per account). The registration is not finished yet: no password.
  async function submitSms() {
    const submitted = await post(state.submitUrl, {
      sid: state.sid, client_secret: state.clientSecret, token: $("sms").value.trim(),
    });
    if (submitted.status !== 200 || submitted.body.success !== true) {
      return fail(explain(submitted.body, submitted.status));
    }
    const judged = await post(REGISTER, {
      auth: {
        type: "m.login.msisdn",
        threepid_creds: { sid: state.sid, client_secret: state.clientSecret },
        session: state.session,
      },
    });
    // Every stage passed: the server only lacks the password (M_MISSING_PARAM).
    if (judged.status === 400 && judged.body.errcode === "M_MISSING_PARAM") return show("password");
    fail(explain(judged.body, judged.status));
    show("phone");
  }

  // 5. The password, checked here for the obvious and by the server for the rest.
  async function finish() {
    const password = $("password").value;
    if (password !== $("password-again").value) return fail("Пароли не совпадают.");
    if (password.length < 8 || /^\d+$/.test(password)) {
      return fail("Пароль слишком простой: нужно не меньше 8 знаков, и не только цифры.");
    }
    const made = await post(REGISTER, {
      password: password,
      inhibit_login: true,
      auth: { session: state.session },
    });
    if (made.status !== 200 || !made.body.user_id) return fail(explain(made.body, made.status));
    $("done-server").textContent = window.location.origin;
    $("done-login").textContent = made.body.user_id;
    show("done");
  }

  // A printed card's QR code opens `/join#@login:server`: how to sign in, nothing to register.
  function signInHelp(userId) {
    $("done-title").textContent = "Как войти";
    $("done-intro").textContent = "Ваша учётная запись уже есть. Войдите в приложение:";
    $("done-password").textContent = "напечатан на вашей карточке";
    $("done-server").textContent = window.location.origin;
    $("done-login").textContent = userId;
    show("done");
  }

  const fragment = decodeURIComponent(window.location.hash.slice(1));
  $("code-next").addEventListener("click", busy($("code-next"), lookUp));
  $("confirm-yes").addEventListener("click", busy($("confirm-yes"), confirm));
  $("confirm-no").addEventListener("click", () => { fail(""); $("code").value = ""; show("code"); });
  $("phone-next").addEventListener("click", busy($("phone-next"), askSms));
  $("sms-next").addEventListener("click", busy($("sms-next"), submitSms));
  $("sms-again").addEventListener("click", () => { fail(""); show("phone"); });
  $("password-next").addEventListener("click", busy($("password-next"), finish));
  if (fragment.startsWith("@")) {
    signInHelp(fragment);
  } else {
    $("code").value = fragment;
    show("code");
  }
})();
