// botfactory console: the little JavaScript the pages need (auto-refresh, live chat). No framework, no build.
"use strict";

(function () {
  // Pages showing live work reload themselves, unless someone is typing in a form.
  const refresh = document.body.dataset.refresh;
  if (refresh) {
    setTimeout(function reload() {
      const active = document.activeElement;
      if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT")) {
        setTimeout(reload, 2000);
        return;
      }
      window.location.reload();
    }, parseInt(refresh, 10) * 1000);
  }

  const form = document.getElementById("chat-form");
  if (!form) return;
  const log = document.getElementById("chat-log");
  const events = document.getElementById("chat-events");
  const sessionLink = document.getElementById("session-link");
  const button = form.querySelector("button[type=submit]");
  const textarea = form.querySelector("textarea");

  function bubble(kind, text, meta) {
    const hint = document.getElementById("chat-hint");
    if (hint) hint.remove();
    const div = document.createElement("div");
    div.className = "bubble bubble-" + kind;
    if (meta) {
      const m = document.createElement("div");
      m.className = "bubble-meta";
      m.textContent = meta;
      div.appendChild(m);
    }
    const body = document.createElement("div");
    body.className = "reply";
    body.textContent = String(text).trim();  // a reply's leading or trailing blank lines would show (pre-wrap)
    div.appendChild(body);
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
    return div;
  }

  function event(kind, text) {
    const empty = document.getElementById("events-empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.className = "event ev-" + kind;
    li.dataset.kind = kind;
    const dot = document.createElement("span");
    dot.className = "dot";
    const span = document.createElement("span");
    span.textContent = text;
    li.appendChild(dot);
    li.appendChild(span);
    events.appendChild(li);
    events.parentElement.scrollTop = events.parentElement.scrollHeight;
  }

  function seconds(s) {
    if (typeof s !== "number") return "";
    return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(1) + " s";
  }

  function busy(on) {
    button.disabled = on;
    button.textContent = on ? "Working…" : "Send";
  }

  function follow(sent) {
    const source = new EventSource(sent.events);
    const pending = bubble("pending", "Thinking…");
    const agents = new Set();
    let turn = null;
    source.onmessage = function (message) {
      const ev = JSON.parse(message.data);
      if (ev.type === "turn_started") {
        if ((ev.message_ids || []).indexOf(sent.message_id) >= 0) {
          turn = ev.turn_id;
          event("turn", "Turn started" + (ev.resumed ? " (resumed)" : ""));
        }
        return;
      }
      if (turn === null || ev.turn_id !== turn) return;
      if (ev.agent_path && !agents.has(ev.agent_path)) {
        agents.add(ev.agent_path);
        event("agent", "Agent " + ev.agent_path + " started");
      }
      switch (ev.type) {
        case "model_call_started":
          event("model", ev.agent_path + " → model " + ev.model);
          break;
        case "model_call_finished":
          event("model", ev.agent_path + " ← " + ev.model + " · " + ev.usage.input_tokens + " → " +
            ev.usage.output_tokens + " tokens · " + seconds(ev.latency_s));
          break;
        case "tool_call_started":
          event("tool", ev.agent_path + " → " + ev.tool);
          break;
        case "tool_call_finished":
          event(ev.ok ? "tool" : "error", ev.agent_path + " ← " + ev.tool + (ev.ok ? "" : " failed") + " · " + seconds(ev.latency_s));
          break;
        case "agent_finished":
          event("agent", "Agent " + ev.agent_path + " finished");
          break;
        case "approval_requested":
          event("approval", "Waiting for approval: " + (ev.message || "a tool needs a person's yes"));
          pending.querySelector(".reply").textContent = "Waiting for an approval (see Approvals)…";
          break;
        case "turn_finished":
          if (ev.status === "interrupted") {
            turn = null; // the next turn answers this message together with newer ones
            return;
          }
          source.close();
          pending.remove();
          event(ev.status === "completed" ? "turn" : "error", "Turn " + ev.status);
          bubble(ev.status === "completed" ? "bot" : "error", ev.reply || "(no reply: " + ev.status + ")",
            ev.status === "completed" ? null : ev.status);
          busy(false);
          if (sessionLink) sessionLink.hidden = false;
          break;
      }
    };
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        pending.remove();
        bubble("error", "Lost the connection to the server; open the session to see how the turn ended.");
        busy(false);
      }
    });
  }

  form.addEventListener("submit", async function (e) {
    e.preventDefault();
    const text = textarea.value.trim();
    if (!text) return;
    const body = new URLSearchParams(new FormData(form));
    bubble("user", text);
    textarea.value = "";
    busy(true);
    let response;
    try {
      response = await fetch(form.action, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": form.elements.csrf.value },
      });
    } catch (err) {
      bubble("error", "Could not reach the server: " + err);
      busy(false);
      return;
    }
    const data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      bubble("error", (data.error && data.error.message) || "The message was refused (" + response.status + ").");
      busy(false);
      return;
    }
    follow(data);
  });

  textarea.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
})();
