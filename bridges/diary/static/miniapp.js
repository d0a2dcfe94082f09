// The diary mini-app's script: an OpenID token through the widget API (widget-api.js, shared
// with the call page), then one call to the bridge, then tables built with textContent only
// (diary text never becomes markup). Self-contained: no libraries, no CDN.
"use strict";

(function () {
  const body = document.body;
  const kind = body.dataset.kind;
  const scope = body.dataset.scope;
  const query = new URLSearchParams(window.location.search);
  const widget = window.sferumWidget("ru.sferum.diary"); // the widget API (widget-api.js)

  const statusEl = document.getElementById("status");
  const contentEl = document.getElementById("content");

  function status(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function table(headers, rows, rowClass) {
    const t = el("table");
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", h)));
    t.appendChild(el("thead")).appendChild(head);
    const tbody = t.appendChild(el("tbody"));
    rows.forEach((cells, i) => {
      const tr = el("tr", null, rowClass ? rowClass(i) : "");
      cells.forEach((c) => tr.appendChild(el("td", c)));
      tbody.appendChild(tr);
    });
    return t;
  }

  // -- the bridge ----------------------------------------------------------------------------

  function showMarks(data) {
    if (!data.marks.length) { contentEl.appendChild(el("p", "Оценок пока нет.", "empty")); return; }
    contentEl.appendChild(table(
      ["Дата", "Предмет", "Работа", "Оценка", "Комментарий"],
      data.marks.map((m) => [m.day, m.subject, m.work, m.value, m.comment]),
    )).id = "marks";
  }

  function showClass(data) {
    contentEl.appendChild(el("h2", "Домашние задания"));
    if (data.homework.length) {
      contentEl.appendChild(table(
        ["Срок", "Предмет", "Задание"],
        data.homework.map((h) => [h.day, h.subject, h.text]),
      )).id = "homework";
    } else {
      contentEl.appendChild(el("p", "Заданий нет.", "empty"));
    }
    contentEl.appendChild(el("h2", "Расписание на неделю"));
    if (data.lessons.length) {
      contentEl.appendChild(table(
        ["День", "Время", "Предмет", "Кабинет", "Учитель", "Примечание"],
        data.lessons.map((l) => [l.day, l.start + "–" + l.end, l.subject, l.room, l.teacher,
          l.cancelled ? ("Отменён" + (l.note ? ": " + l.note : "")) : l.note]),
        (i) => (data.lessons[i].cancelled ? "cancelled" : data.lessons[i].status),
      )).id = "lessons";
    } else {
      contentEl.appendChild(el("p", "Уроков на этой неделе нет.", "empty"));
    }
    if (data.ical) {
      const p = contentEl.appendChild(el("p", null, "ical"));
      const a = p.appendChild(el("a", "Расписание в календарь (.ics)"));
      a.href = new URL(data.ical.replace(/^\//, ""), new URL(".", window.location.href)).href;
    }
  }

  function showNews(data) {
    if (!data.articles.length) { contentEl.appendChild(el("p", "Новостей пока нет.", "empty")); return; }
    const list = contentEl.appendChild(el("div", null, "articles"));
    list.id = "articles";
    data.articles.forEach((a) => {
      const item = list.appendChild(el("article"));
      item.appendChild(el("h2", a.title || "Без заголовка"));
      item.appendChild(el("p", [a.author, a.day + ", " + a.time].filter(Boolean).join(" · "), "meta"));
      if (a.summary) item.appendChild(el("p", a.summary, "summary"));
      const more = item.appendChild(el("details"));
      more.appendChild(el("summary", "Читать полностью"));
      const body = more.appendChild(el("div", null, "article-body"));
      if (a.html) {
        const inert = new DOMParser().parseFromString(a.html, "text/html");
        body.append(...inert.body.childNodes);
      } else {
        body.appendChild(el("p", a.text, "plain"));
      }
    });
  }

  const SHOW = { diary: showMarks, class: showClass, news: showNews };

  async function main() {
    if (!Object.prototype.hasOwnProperty.call(SHOW, kind)) { status("error", "Неверная ссылка."); return; }
    if (!widget.embedded) {
      status("no-host", "Откройте дневник в комнате мессенджера.");
      return;
    }
    status("openid", "Проверка входа…");
    const openid = await widget.openId();
    if (!openid) { status("denied", "Нет доступа: приложение не подтвердило вход."); return; }
    const request = { openid: openid, kind: kind, scope: scope };
    if (query.get("week")) request.week = query.get("week");
    let response;
    try {
      response = await fetch("app/api/view", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
        credentials: "omit",
      });
    } catch (e) {
      status("error", "Сервер дневника недоступен.");
      return;
    }
    if (response.status === 401) { status("unauthorized", "Вход не подтверждён."); return; }
    if (response.status === 403) { status("forbidden", "Нет доступа."); return; }
    if (!response.ok) { status("error", "Ошибка сервера дневника (" + response.status + ")."); return; }
    const data = await response.json();
    status("ok", "");
    SHOW[data.kind](data);
  }

  main();
})();
