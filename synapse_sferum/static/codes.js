// The staff room's page of invite links (a widget): the client's OpenID token says who the
// teacher is; the server (synapse_sferum/invites.py) decides and issues, as for «коды 5А» to
// the platform bot. Printing the page gives the sheet to hand out.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const widget = window.sferumWidget("ru.sferum.invites");
  let token = null;

  function fail(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  async function signIn() {
    if (!widget.embedded) {
      $("status").textContent = "Откройте эту страницу из комнаты учителей в приложении.";
      return;
    }
    const openid = await widget.openId();
    if (!openid) {
      $("status").textContent = "Нет доступа: приложение не подтвердило вход.";
      return;
    }
    token = openid.access_token;
    $("status").textContent = "Напишите класс, например 5А.";
    $("issue").disabled = false;
  }

  async function issue() {
    fail("");
    $("issue").disabled = true;
    try {
      const response = await fetch("/join/codes/issue", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "omit",
        body: JSON.stringify({ openid_token: token, class: $("class").value }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        fail(body.error || "Не получилось выдать коды.");
        return;
      }
      $("result-title").textContent = "Класс " + body.class + ", до " + body.expires.split("-").reverse().join(".");
      const list = $("invitations");
      list.textContent = "";
      for (const invitation of body.invitations) {
        const item = document.createElement("li");
        const name = document.createElement("strong");
        name.textContent = invitation.name;
        const link = document.createElement("div");
        link.className = "link";
        link.textContent = invitation.link;
        item.append(name, link);
        list.append(item);
      }
      $("skipped").textContent = body.invitations.length === 0
        ? "Новых кодов нет: у всех уже есть учётные записи."
        : (body.skipped.length ? "Без кода: " + body.skipped.join(", ") + "." : "");
      $("result").hidden = false;
      document.body.dataset.issued = String(body.invitations.length);
    } catch (e) {
      fail("Нет связи с сервером.");
    } finally {
      $("issue").disabled = false;
    }
  }

  $("issue").addEventListener("click", issue);
  $("print").addEventListener("click", () => window.print());
  signIn();
})();
