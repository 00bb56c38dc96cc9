/*
 * bpd-rag chat widget. One tag on any page:
 *   <script src="https://bot.example/widget.js" data-api="https://bot.example" defer></script>
 * adds <bpd-rag-chat>: a launcher button and a chat panel in a shadow root, so the page's CSS and the
 * widget's CSS stay apart. Plain JavaScript, no build step, no dependencies.
 *
 * Safety: every text from the user or the server is put in the page with textContent / text nodes,
 * never parsed as HTML; links are made only from http(s) URLs and from the crisis resources' numbers.
 */
(function () {
  "use strict";

  var TAG = "bpd-rag-chat";
  if (!window.customElements || window.customElements.get(TAG)) return;

  var script = document.currentScript;
  var scriptApi = "";
  if (script) {
    scriptApi = script.getAttribute("data-api") || "";
    if (!scriptApi && script.src) scriptApi = new URL(script.src, location.href).origin;
  }

  var HISTORY_MESSAGES = 10; // earlier messages sent with a question (the server accepts up to 20)
  var HISTORY_CHARS = 8000;
  // Every fixed text the widget shows, filled in by the server from its reviewed prompts/ when it serves
  // this file; fetched from GET /api/widget/texts when the file was copied elsewhere.
  var SERVED_TEXTS = /*BPD_RAG_TEXTS*/null;
  var T = null; // the texts in use (set before the widget is built)

  function sourceLabel(type) {
    var labels = (T && T.source_types) || {};
    return labels[type] || String(type || "document").replace(/_/g, " ");
  }

  /* The first words of a quote, for telling chips of one source apart. */
  function excerpt(quote) {
    var words = String(quote || "").split(/\s+/).filter(Boolean);
    return "\u201c" + words.slice(0, 4).join(" ") + (words.length > 4 ? "\u2026" : "") + "\u201d";
  }

  /* How a source is named on its chip and beside a quote: publisher (or title) and kind. */
  function sourceName(c) {
    return (c.publisher || c.title || c.doc_id) + " (" + sourceLabel(c.source_type) + ")";
  }

  function format(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (_, key) { return values[key] === undefined ? "" : String(values[key]); });
  }

  /* el("p", {class: "x"}, "text", child) — attributes via setAttribute, strings as text nodes. */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        node.setAttribute(name, value === true ? "" : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function icon(path) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "20");
    svg.setAttribute("height", "20");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    p.setAttribute("fill", "currentColor");
    svg.appendChild(p);
    return svg;
  }

  var ICONS = {
    chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2zm2 4v2h12V8H6zm0 4v2h8v-2H6z",
    close: "M18.3 5.7 12 12l6.3 6.3-1.4 1.4L10.6 13.4 4.3 19.7 2.9 18.3 9.2 12 2.9 5.7 4.3 4.3l6.3 6.3 6.3-6.3z",
    send: "M3 20.5v-7l9-1.5-9-1.5v-7L22 12z",
    up: "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1.2-.7v-2z",
    down: "M22 3h-4v12h4V3zM2 14a2 2 0 0 0 2 2h6.3l-1 4.6v.3c0 .4.2.8.4 1.1l1.1 1L17.4 16.4c.4-.4.6-.9.6-1.4V5a2 2 0 0 0-2-2H7c-.8 0-1.5.5-1.8 1.2l-3 7.1-.2.7v2z",
    phone: "M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2c.3-.3.7-.4 1-.2 1.1.4 2.3.6 3.6.6.6 0 1 .4 1 1V20c0 .6-.4 1-1 1A17 17 0 0 1 3 4c0-.6.4-1 1-1h3.5c.6 0 1 .4 1 1 0 1.3.2 2.5.6 3.6.1.3 0 .7-.2 1l-2.3 2.2z",
  };

  /* Links of a crisis resource, built from its structured numbers only (never from its text). */
  function resourceActions(r) {
    var actions = [];
    var dial = function (number) { return String(number).replace(/[\s-]/g, ""); };
    if (r.call) actions.push({ href: "tel:" + dial(r.call), label: T.ui.call + " " + r.call });
    if (r.sms && r.sms_body) {
      actions.push({ href: "sms:" + dial(r.sms) + "?body=" + encodeURIComponent(r.sms_body), label: format(T.ui.text_to, { word: r.sms_body, number: r.sms }) });
    } else if (r.sms) {
      actions.push({ href: "sms:" + dial(r.sms), label: T.ui.text + " " + r.sms });
    }
    return actions;
  }

  /* A random id for this tab's conversation: the server keeps the conversation's risk under it. */
  function newConversationId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    return "c-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  function safeUrl(url) {
    try {
      var u = new URL(url);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  /* Server-sent events from a fetch Response: calls onEvent(name, data) for each complete event. */
  async function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder("utf-8");
    var buffer = "";
    var boundary = /\r\n\r\n|\n\n|\r\r/;
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      var match;
      while ((match = boundary.exec(buffer))) {
        var block = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        var name = "message";
        var data = [];
        block.split(/\r\n|\r|\n/).forEach(function (line) {
          if (!line || line.charAt(0) === ":") return;
          var colon = line.indexOf(":");
          var field = colon < 0 ? line : line.slice(0, colon);
          var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = value;
          else if (field === "data") data.push(value);
        });
        if (data.length) onEvent(name, data.join("\n"));
      }
    }
  }

  async function errorMessage(response) {
    try {
      var body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) {
      /* not JSON: fall through */
    }
    return format(T.ui.server_error, { status: response.status });
  }

  var CSS = [
    ":host{all:initial !important;display:block !important;position:static !important;visibility:visible !important;opacity:1 !important;}",
    "[hidden]{display:none !important;}",
    ".root{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.45;color:#1b1f23;letter-spacing:normal;text-transform:none;text-align:left;-webkit-font-smoothing:antialiased;}",
    ".root *,.root *::before,.root *::after{box-sizing:border-box;}",
    "button,input,textarea{font:inherit;color:inherit;letter-spacing:inherit;text-transform:none;margin:0;}",
    "button{cursor:pointer;}",
    ":focus-visible{outline:3px solid #1a73e8;outline-offset:2px;}",
    ".sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0;}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;display:flex;align-items:center;gap:8px;min-height:48px;padding:12px 18px;border:0;border-radius:999px;background:#0f5e6e;color:#fff;font-weight:600;font-size:15px;box-shadow:0 4px 16px rgba(0,0,0,.25);}",
    ".launcher:hover{background:#0c4b58;}",
    ".panel{position:fixed;right:20px;bottom:20px;z-index:2147483001;display:flex;flex-direction:column;width:400px;max-width:calc(100vw - 40px);height:min(720px,calc(100vh - 40px));background:#fff;border:1px solid #c9d1d9;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.28);overflow:hidden;}",
    ".header{display:flex;align-items:center;gap:8px;padding:10px 10px 10px 16px;background:#0f5e6e;color:#fff;}",
    ".header .titles{flex:1;min-width:0;}",
    ".header h2{margin:0;font-size:16px;font-weight:700;line-height:1.3;color:#fff;}",
    ".header p{margin:2px 0 0;font-size:12.5px;line-height:1.35;color:#e3f1f3;}",
    ".icon-btn{display:inline-flex;align-items:center;justify-content:center;min-width:40px;min-height:40px;padding:6px;border:1px solid transparent;border-radius:8px;background:transparent;color:#fff;}",
    ".icon-btn:hover{background:rgba(255,255,255,.15);}",
    ".text-btn{min-height:40px;padding:6px 10px;border:1px solid rgba(255,255,255,.6);border-radius:8px;background:transparent;color:#fff;font-size:13px;}",
    ".text-btn:hover{background:rgba(255,255,255,.15);}",
    ".log{flex:1;overflow-y:auto;padding:14px;background:#f6f8fa;display:flex;flex-direction:column;gap:12px;}",
    ".welcome{padding:12px 14px;background:#fff;border:1px solid #d8dee4;border-radius:12px;}",
    ".welcome p{margin:0 0 8px;}",
    ".suggestions{display:flex;flex-direction:column;gap:6px;}",
    ".suggestion{text-align:left;padding:8px 10px;min-height:40px;border:1px solid #0f5e6e;border-radius:10px;background:#fff;color:#0f5e6e;font-size:14px;}",
    ".suggestion:hover{background:#e8f3f5;}",
    ".msg{max-width:92%;padding:10px 12px;border-radius:12px;overflow-wrap:anywhere;}",
    ".user{align-self:flex-end;background:#0f5e6e;color:#fff;border-bottom-right-radius:4px;white-space:pre-wrap;}",
    ".bot{align-self:flex-start;background:#fff;border:1px solid #d8dee4;border-bottom-left-radius:4px;}",
    ".bot .text{white-space:pre-wrap;}",
    ".bot .text p{margin:0 0 8px;}.bot .text p:last-child{margin-bottom:0;}",
    ".lead{font-weight:500;}",
    ".points{margin:6px 0 0;padding-left:20px;}.points li{margin:0 0 6px;}",
    ".who{font-size:12.5px;font-weight:600;color:#57606a;}",
    ".ref{display:inline-flex;align-items:center;justify-content:center;min-width:22px;min-height:22px;margin:0 1px;padding:0 4px;border:1px solid #0f5e6e;border-radius:6px;background:#fff;color:#0f5e6e;font-size:12px;font-weight:700;vertical-align:baseline;}",
    ".ref:hover{background:#e8f3f5;}",
    ".footer-line{margin:10px 0 0;font-size:12.5px;color:#444c56;}",
    ".footer-line a{color:#a01c12;font-weight:700;margin-left:6px;}",
    ".thinking{color:#57606a;font-style:italic;}",
    ".error{align-self:stretch;background:#fff8c5;border:1px solid #bf8700;color:#3b2300;}",
    ".no_answer .text,.refusal .text{color:#2d333b;}",
    ".chips{display:flex;flex-wrap:wrap;gap:6px;margin-top:10px;}",
    ".chips-label{width:100%;font-size:12px;font-weight:600;color:#57606a;text-transform:uppercase;letter-spacing:.04em;}",
    ".chip{display:inline-flex;align-items:center;gap:6px;max-width:100%;min-height:34px;padding:4px 10px 4px 4px;border:1px solid #0f5e6e;border-radius:999px;background:#fff;color:#0f5e6e;font-size:13px;}",
    ".chip .num{display:inline-flex;align-items:center;justify-content:center;min-width:24px;height:24px;border-radius:999px;background:#0f5e6e;color:#fff;font-weight:700;font-size:12px;}",
    ".chip .chip-title{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;max-width:170px;}",
    ".chip .chip-kind{font-size:11.5px;color:#57606a;white-space:nowrap;}",
    ".chip[aria-expanded='true'] .chip-kind{color:#e3f1f3;}",
    ".chip[aria-expanded='true']{background:#0f5e6e;color:#fff;}",
    ".chip[aria-expanded='true'] .num{background:#fff;color:#0f5e6e;}",
    ".source{margin-top:8px;padding:10px 12px;border:1px solid #0f5e6e;border-radius:10px;background:#f2f8f9;}",
    ".source:focus{outline:none;}.source:focus-visible{outline:3px solid #1a73e8;outline-offset:2px;}",
    ".source h3{margin:0;font-size:14px;font-weight:700;line-height:1.35;color:#1b1f23;}",
    ".badge{display:inline-block;margin:4px 0 6px;padding:1px 8px;border-radius:999px;background:#ddeef1;color:#0b4652;font-size:12px;font-weight:600;}",
    ".source blockquote{margin:4px 0 8px;padding:0 0 0 10px;border-left:3px solid #0f5e6e;color:#24292f;font-style:normal;white-space:pre-wrap;}",
    ".source-actions{display:flex;flex-wrap:wrap;gap:8px;align-items:center;}",
    ".source a{color:#0b4f8a;font-weight:600;}",
    ".small-btn{min-height:34px;padding:4px 10px;border:1px solid #57606a;border-radius:8px;background:#fff;color:#24292f;font-size:13px;}",
    ".conflict{margin-top:8px;padding:8px 10px;border-radius:8px;background:#fff8c5;border:1px solid #d4a72c;color:#3b2300;font-size:13px;}",
    ".notice{margin:8px 0 0;font-size:13px;color:#57606a;font-style:italic;}",
    ".disclaimer{margin:10px 0 0;padding-top:8px;border-top:1px solid #e1e4e8;font-size:12.5px;color:#444c56;}",
    ".feedback{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin-top:8px;font-size:13px;color:#444c56;}",
    ".vote{display:inline-flex;align-items:center;justify-content:center;min-width:36px;min-height:34px;border:1px solid #8c959f;border-radius:8px;background:#fff;color:#444c56;}",
    ".vote[aria-pressed='true']{background:#0f5e6e;border-color:#0f5e6e;color:#fff;}",
    ".comment-form{display:flex;gap:6px;width:100%;}",
    ".comment-form input{flex:1;min-width:0;min-height:34px;padding:4px 8px;border:1px solid #8c959f;border-radius:8px;background:#fff;font-size:13px;}",
    ".crisis{align-self:stretch;max-width:100%;background:#fff5f5;border:2px solid #b42318;border-left-width:6px;}",
    ".crisis h3{margin:0 0 8px;font-size:16px;color:#8a1c12;}",
    ".resources{list-style:none;margin:0 0 10px;padding:0;display:flex;flex-direction:column;gap:8px;}",
    ".resource{padding:8px 10px;border-radius:8px;background:#fff;border:1px solid #f1b4ae;}",
    ".resource-text{display:block;font-weight:600;color:#1b1f23;margin-bottom:6px;}",
    ".resource-links{display:flex;flex-wrap:wrap;gap:6px;}",
    ".resource-links a{display:inline-flex;align-items:center;gap:6px;min-height:40px;padding:8px 14px;border-radius:999px;background:#b42318;color:#fff;font-weight:700;text-decoration:none;}",
    ".resource-links a:hover{background:#8a1c12;}",
    ".support{margin-top:10px;padding:8px 10px;border-radius:8px;background:#fff5f5;border:1px solid #f1b4ae;}",
    ".support .resources{margin:6px 0 0;}",
    ".footer{padding:10px 12px 12px;border-top:1px solid #d8dee4;background:#fff;}",
    ".crisis-line{margin:0 0 8px;font-size:12.5px;color:#444c56;}",
    ".crisis-line a{color:#a01c12;font-weight:700;margin-left:8px;display:inline-block;}",
    ".form{display:flex;gap:8px;align-items:flex-end;}",
    ".form textarea{flex:1;min-width:0;min-height:44px;max-height:140px;padding:10px 12px;border:1px solid #8c959f;border-radius:10px;background:#fff;color:#1b1f23;resize:none;font-size:15px;line-height:1.35;}",
    ".send{display:inline-flex;align-items:center;gap:6px;min-height:44px;padding:10px 14px;border:0;border-radius:10px;background:#0f5e6e;color:#fff;font-weight:600;}",
    ".send:disabled{background:#6e7781;cursor:progress;}",
    "@media (max-width:480px){.panel{top:0;left:0;right:0;bottom:0;width:100%;max-width:none;height:100%;border-radius:0;border:0;}.launcher{right:12px;bottom:12px;}.chip .chip-title{max-width:120px;}}",
    "@media (prefers-reduced-motion:no-preference){.launcher{transition:background .15s;}}",
  ].join("\n");

  class BpdRagChat extends HTMLElement {
    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.turns = [];
      this.busy = false;
      this.built = false;
    }

    get api() {
      return (this.getAttribute("api") || scriptApi || location.origin).replace(/\/+$/, "");
    }

    get storageKey() {
      return "bpd-rag-chat:v1:" + this.api;
    }

    connectedCallback() {
      if (this.built) return;
      this.built = true;
      var self = this;
      if (T) return this.start();
      if (SERVED_TEXTS) {
        T = SERVED_TEXTS;
        return this.start();
      }
      fetch(this.api + "/api/widget/texts")
        .then(function (response) { return response.json(); })
        .then(function (texts) { T = texts; self.start(); })
        .catch(function () { /* no texts, no service: nothing to show */ });
    }

    start() {
      this.build();
      var saved = this.load();
      this.turns = saved.turns;
      this.conversationId = saved.conversation;
      this.turns.forEach(this.renderTurn, this);
      if (saved.open) this.open(false);
    }

    /* --- storage (this browser tab only) ------------------------------------------------------- */

    load() {
      try {
        var raw = sessionStorage.getItem(this.storageKey);
        var data = raw ? JSON.parse(raw) : null;
        if (data && Array.isArray(data.turns)) {
          return { turns: data.turns, open: !!data.open, conversation: data.conversation || newConversationId() };
        }
      } catch (e) {
        /* storage blocked or damaged: start afresh */
      }
      return { turns: [], open: false, conversation: newConversationId() };
    }

    save() {
      try {
        sessionStorage.setItem(
          this.storageKey,
          JSON.stringify({ turns: this.turns, open: !this.panel.hidden, conversation: this.conversationId })
        );
      } catch (e) {
        /* storage full or blocked: the conversation still works for this page view */
      }
    }

    history() {
      var messages = this.turns
        .filter(function (t) { return t.role === "user" || (t.role === "assistant" && t.reply); })
        .map(function (t) { return { role: t.role, content: t.role === "user" ? t.content : t.reply.answer }; })
        .slice(-HISTORY_MESSAGES);
      var total = 0;
      var kept = [];
      for (var i = messages.length - 1; i >= 0; i--) {
        total += messages[i].content.length;
        if (total > HISTORY_CHARS) break;
        kept.unshift(messages[i]);
      }
      return kept;
    }

    /* --- building the UI --------------------------------------------------------------------- */

    build() {
      var self = this;
      var style = el("style");
      style.textContent = CSS;

      this.launcher = el(
        "button",
        { class: "launcher", type: "button", "aria-expanded": "false", "aria-controls": "bpd-panel", "aria-haspopup": "dialog" },
        icon(ICONS.chat),
        el("span", null, T.ui.launcher)
      );
      this.launcher.addEventListener("click", function () { self.open(true); });

      var close = el("button", { class: "icon-btn", type: "button", "aria-label": T.ui.close_chat }, icon(ICONS.close));
      close.addEventListener("click", function () { self.close(); });
      var reset = el("button", { class: "text-btn", type: "button" }, T.ui.new_chat);
      reset.addEventListener("click", function () { self.reset(); });

      var header = el(
        "div",
        { class: "header" },
        el(
          "div",
          { class: "titles" },
          el("h2", { id: "bpd-title" }, T.ui.title),
          el("p", null, T.ui.subtitle)
        ),
        reset,
        close
      );

      this.log = el("div", { class: "log", tabindex: "0", "aria-label": T.ui.conversation, "aria-live": "off" });
      this.welcome = el(
        "div",
        { class: "welcome" },
        el("p", null, T.ui.welcome),
        el("div", { class: "suggestions", role: "group", "aria-label": T.ui.suggestions_label })
      );
      T.ui.suggestions.forEach(function (q) {
        var b = el("button", { class: "suggestion", type: "button" }, q);
        b.addEventListener("click", function () { self.send(q); });
        self.welcome.lastChild.appendChild(b);
      });
      this.log.appendChild(this.welcome);

      this.input = el("textarea", {
        id: "bpd-input",
        rows: "1",
        placeholder: T.ui.placeholder,
        autocomplete: "off",
        maxlength: "2000",
      });
      this.input.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          self.submit();
        }
      });
      this.input.addEventListener("input", function () { self.autosize(); });
      this.sendButton = el("button", { class: "send", type: "submit" }, icon(ICONS.send), el("span", null, T.ui.send));
      var form = el(
        "form",
        { class: "form", "aria-label": "Ask a question" },
        el("label", { for: "bpd-input", class: "sr-only" }, T.ui.input_label),
        this.input,
        this.sendButton
      );
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        self.submit();
      });

      var footer = el(
        "div",
        { class: "footer" },
        this.footerLine("crisis-line", T.crisis.resources.slice(0, 1)),
        form
      );

      this.panel = el(
        "section",
        { id: "bpd-panel", class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "bpd-title", hidden: true },
        header,
        this.log,
        footer
      );
      this.panel.addEventListener("keydown", function (event) { self.onKeydown(event); });

      this.polite = el("div", { class: "sr-only", "aria-live": "polite", "aria-atomic": "true" });
      this.assertive = el("div", { class: "sr-only", "aria-live": "assertive", "aria-atomic": "true" });

      var root = el("div", { class: "root" }, this.launcher, this.panel, this.polite, this.assertive);
      this.shadowRoot.append(style, root);
    }

    autosize() {
      this.input.style.height = "auto";
      this.input.style.height = Math.min(this.input.scrollHeight + 2, 140) + "px";
    }

    open(focus) {
      this.panel.hidden = false;
      this.launcher.hidden = true;
      this.launcher.setAttribute("aria-expanded", "true");
      this.save();
      this.scrollToEnd();
      if (focus) this.input.focus();
    }

    close() {
      this.panel.hidden = true;
      this.launcher.hidden = false;
      this.launcher.setAttribute("aria-expanded", "false");
      this.save();
      this.launcher.focus();
    }

    reset() {
      if (this.busy) return;
      this.turns = [];
      this.conversationId = newConversationId();
      this.save();
      while (this.log.lastChild !== this.welcome) this.log.removeChild(this.log.lastChild);
      this.welcome.hidden = false;
      this.announce(T.ui.new_chat_done);
      this.input.focus();
    }

    onKeydown(event) {
      if (event.key === "Escape") {
        event.preventDefault();
        var active = this.shadowRoot.activeElement;
        var card = active && active.closest ? active.closest(".source") : null;
        var chip = active && active.classList && active.classList.contains("chip") && active.getAttribute("aria-expanded") === "true" ? active : null;
        if (card || chip) {
          var owner = card ? card.bpdChip : chip;
          this.closeSource(owner);
          owner.focus();
          return;
        }
        this.close();
        return;
      }
      var target = event.target;
      if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && target.classList && target.classList.contains("chip")) {
        var chips = Array.prototype.slice.call(target.parentNode.querySelectorAll(".chip"));
        var i = chips.indexOf(target) + (event.key === "ArrowRight" ? 1 : -1);
        if (i >= 0 && i < chips.length) {
          event.preventDefault();
          chips[i].focus();
        }
      }
    }

    scrollToEnd() {
      this.log.scrollTop = this.log.scrollHeight;
    }

    announce(text, urgent) {
      var region = urgent ? this.assertive : this.polite;
      region.textContent = "";
      window.setTimeout(function () { region.textContent = text; }, 50);
    }

    /* --- asking ----------------------------------------------------------------------------- */

    submit() {
      var text = this.input.value;
      if (!text.trim() || this.busy) return;
      this.input.value = "";
      this.autosize();
      this.send(text);
    }

    async send(text) {
      if (this.busy) return;
      this.busy = true;
      this.sendButton.disabled = true;
      this.sendButton.setAttribute("aria-label", T.ui.sending);
      var history = this.history();
      var userTurn = { role: "user", content: text };
      this.turns.push(userTurn);
      this.save();
      this.renderTurn(userTurn);
      var view = this.renderPending();
      try {
        var response = await fetch(this.api + "/api/chat/stream", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify({ message: text, history: history, conversation_id: this.conversationId }),
        });
        if (!response.ok) throw new Error(await errorMessage(response));
        var reply = null;
        var self = this;
        await readEvents(response, function (name, data) {
          if (name === "delta") {
            view.append(JSON.parse(data).text);
            self.scrollToEnd();
          } else if (name === "done") {
            reply = JSON.parse(data);
          }
        });
        if (!reply) throw new Error(T.ui.cut_off);
        var turn = { role: "assistant", reply: reply, rating: null };
        this.turns.push(turn);
        this.save();
        var article = this.renderReply(turn);
        view.node.replaceWith(article);
        this.announce((reply.kind === "crisis" ? T.ui.announce_crisis : T.ui.announce_answer) + reply.answer, reply.kind === "crisis");
      } catch (error) {
        var message = error && error.message ? error.message : String(error);
        if (error instanceof TypeError) message = T.ui.unreachable;
        var box = el("div", { class: "msg error", role: "alert" }, message);
        view.node.replaceWith(box);
      } finally {
        this.busy = false;
        this.sendButton.disabled = false;
        this.sendButton.removeAttribute("aria-label");
        this.scrollToEnd();
        if (!this.panel.hidden) this.input.focus();
      }
    }

    /* --- rendering ---------------------------------------------------------------------------- */

    renderTurn(turn) {
      this.welcome.hidden = true;
      var node;
      if (turn.role === "user") node = el("div", { class: "msg user" }, el("span", { class: "sr-only" }, T.ui.you), turn.content);
      else node = this.renderReply(turn);
      this.log.appendChild(node);
      this.scrollToEnd();
    }

    renderPending() {
      var text = el("div", { class: "text thinking" }, T.ui.thinking);
      var node = el("article", { class: "msg bot", "aria-busy": "true", "aria-label": T.ui.loading_label }, text);
      this.log.appendChild(node);
      this.scrollToEnd();
      var started = false;
      return {
        node: node,
        append: function (piece) {
          if (!started) {
            started = true;
            text.className = "text";
            text.textContent = "";
          }
          text.appendChild(document.createTextNode(piece));
        },
      };
    }

    /* One statement's text with its [n] markers as buttons that open the cited source. */
    renderStatement(node, st, refs) {
      node.appendChild(document.createTextNode(st.text));
      (st.citation_ids || []).forEach(function (n) {
        node.appendChild(document.createTextNode(" "));
        var ref = el("button", { class: "ref", type: "button", "aria-label": T.ui.source + " " + n }, "[" + n + "]");
        refs.push({ button: ref, id: n });
        node.appendChild(ref);
      });
      return node;
    }

    /* Statements as a lead paragraph, the bot's own lines, and the supporting points as a list. */
    renderText(statements, citations, refs) {
      var self = this;
      var byId = {};
      var seen = {};
      citations.forEach(function (c) {
        /* Several quotes of one source: its name on the first chip, the quote's first words on the others,
           so the chips can be told apart. */
        var source = c.doc_id || c.title;
        var label = seen[source] ? excerpt(c.quote) : c.publisher || c.title;
        seen[source] = true; byId[c.id] = c; });
      var text = el("div", { class: "text" });
      var lead = null;
      var points = null;
      statements.forEach(function (st) {
        if (st.kind === "plain" && st.lead) {
          if (!lead) lead = text.appendChild(el("p", { class: "lead" }));
          else lead.appendChild(document.createTextNode(" "));
          self.renderStatement(lead, st, refs);
          return;
        }
        if (st.kind === "quote" || st.kind === "plain") {
          if (!points) points = text.appendChild(el("ul", { class: "points" }));
          var item = points.appendChild(el("li"));
          var cited = byId[(st.citation_ids || [])[0]];
          if (st.kind === "quote" && cited) item.appendChild(el("span", { class: "who" }, sourceName(cited) + ": "));
          self.renderStatement(item, st, refs);
          return;
        }
        points = null;
        text.appendChild(self.renderStatement(el("p"), st, refs));
      });
      return text;
    }

    renderReply(turn) {
      var self = this;
      var reply = turn.reply;
      if (reply.kind === "crisis") return this.renderCrisis(reply);
      var statements = reply.statements || [];
      var citations = reply.citations || [];
      var resources = reply.resources || [];
      var refs = [];
      var article = el("article", { class: "msg bot " + reply.kind, "aria-label": T.ui.answer_label });
      // A check-in comes first, with the resources right after it; the safety line at the end is a footer.
      var body = [];
      var footer = null;
      statements.forEach(function (st, i) {
        if (st.kind === "safety" && st.resources) {
          article.appendChild(el("div", { class: "support" }, el("strong", null, st.text), self.renderResources(resources)));
        } else if (st.kind === "safety" && i === statements.length - 1 && resources.length && reply.kind !== "refusal") {
          footer = st;
        } else if (st.kind !== "conflict") {
          body.push(st);
        }
      });
      article.appendChild(this.renderText(body, citations, refs));
      if (reply.notice) article.appendChild(el("p", { class: "notice" }, reply.notice));
      statements.forEach(function (st) {
        if (st.kind !== "conflict") return;
        self.renderStatement(article.appendChild(el("div", { class: "conflict" }, el("strong", null, T.ui.disagree))), st, refs);
      });
      if (citations.length) article.appendChild(this.renderCitations(citations, refs));
      if (footer) article.appendChild(this.footerLine("footer-line", resources, footer.text));
      if (reply.disclaimer) article.appendChild(el("p", { class: "disclaimer" }, reply.disclaimer));
      if (reply.id) article.appendChild(this.renderFeedback(turn));
      return article;
    }

    renderCrisis(reply) {
      var self = this;
      var id = "crisis-" + (reply.id || "x");
      var text = el("div", { class: "text" });
      (reply.statements || []).forEach(function (st) { text.appendChild(self.renderStatement(el("p"), st, [])); });
      return el(
        "article",
        { class: "msg bot crisis", role: "group", "aria-labelledby": id },
        el("h3", { id: id }, T.crisis.heading),
        this.renderResources(reply.resources || []),
        text
      );
    }

    renderResources(resources) {
      var list = el("ul", { class: "resources" });
      resources.forEach(function (r) {
        var links = el("span", { class: "resource-links" });
        resourceActions(r).forEach(function (a) {
          links.appendChild(el("a", { href: a.href }, icon(ICONS.phone), a.label));
        });
        list.appendChild(el("li", { class: "resource" }, el("span", { class: "resource-text" }, r.text), links));
      });
      return list;
    }

    /* One small line offering the resources' links (the panel's footer, and under answers on risk topics). */
    footerLine(className, resources, text) {
      var line = el("p", { class: className }, text || T.crisis.footer);
      resources.forEach(function (r) {
        resourceActions(r).forEach(function (a) { line.appendChild(el("a", { href: a.href }, a.label)); });
      });
      return line;
    }

    renderCitations(citations, refs) {
      var self = this;
      var wrap = el("div", { class: "citations" });
      var chips = el("div", { class: "chips", role: "group", "aria-label": T.ui.sources }, el("span", { class: "chips-label", "aria-hidden": "true" }, T.ui.sources));
      var card = el("div", { class: "source", role: "region", tabindex: "-1", hidden: true });
      wrap.append(chips, card);
      var byId = {};
      var seen = {};
      citations.forEach(function (c) {
        /* Several quotes of one source: its name on the first chip, the quote's first words on the others,
           so the chips can be told apart. */
        var source = c.doc_id || c.title;
        var label = seen[source] ? excerpt(c.quote) : c.publisher || c.title;
        seen[source] = true;
        var chip = el(
          "button",
          {
            class: "chip",
            type: "button",
            "aria-expanded": "false",
            "aria-label": T.ui.source + " " + c.id + ": " + sourceName(c),
          },
          el("span", { class: "num", "aria-hidden": "true" }, String(c.id)),
          el("span", { class: "chip-title", "aria-hidden": "true" }, label),
          el("span", { class: "chip-kind", "aria-hidden": "true" }, sourceLabel(c.source_type))
        );
        chip.bpdCitation = c;
        chip.bpdCard = card;
        chip.addEventListener("click", function () {
          if (chip.getAttribute("aria-expanded") === "true") self.closeSource(chip);
          else self.openSource(chip);
        });
        byId[c.id] = chip;
        chips.appendChild(chip);
      });
      refs.forEach(function (ref) {
        var chip = byId[ref.id];
        if (!chip) return;
        ref.button.addEventListener("click", function () { self.openSource(chip); });
      });
      return wrap;
    }

    openSource(chip) {
      var self = this;
      var c = chip.bpdCitation;
      var card = chip.bpdCard;
      Array.prototype.forEach.call(chip.parentNode.querySelectorAll(".chip"), function (other) {
        other.setAttribute("aria-expanded", "false");
      });
      chip.setAttribute("aria-expanded", "true");
      card.textContent = "";
      card.bpdChip = chip;
      card.setAttribute("aria-label", T.ui.source + " " + c.id);
      var actions = el("div", { class: "source-actions" });
      var url = safeUrl(c.url);
      if (url) actions.appendChild(el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, T.ui.open_source));
      var hide = el("button", { class: "small-btn", type: "button" }, T.ui.close_source);
      hide.addEventListener("click", function () {
        self.closeSource(chip);
        chip.focus();
      });
      actions.appendChild(hide);
      card.append(
        el("h3", null, "[" + c.id + "] " + c.title),
        el("span", { class: "badge" }, (c.publisher ? c.publisher + " · " : "") + sourceLabel(c.source_type)),
        el("blockquote", null, "“" + c.quote + "”"),
        actions
      );
      card.hidden = false;
      card.focus();
    }

    closeSource(chip) {
      chip.setAttribute("aria-expanded", "false");
      chip.bpdCard.hidden = true;
    }

    renderFeedback(turn) {
      var self = this;
      var row = el("div", { class: "feedback", role: "group", "aria-label": T.ui.helpful_question }, el("span", null, T.ui.helpful));
      var status = el("span", { class: "feedback-status", role: "status" });
      var votes = {};
      [["up", T.ui.vote_up, ICONS.up], ["down", T.ui.vote_down, ICONS.down]].forEach(function (v) {
        var b = el("button", { class: "vote", type: "button", "aria-label": v[1], "aria-pressed": turn.rating === v[0] ? "true" : "false" }, icon(v[2]));
        b.addEventListener("click", function () { self.vote(turn, v[0], votes, status, row); });
        votes[v[0]] = b;
        row.appendChild(b);
      });
      row.appendChild(status);
      return row;
    }

    async vote(turn, rating, votes, status, row) {
      var ok = await this.postFeedback(turn.reply.id, rating, "", status);
      if (!ok) return;
      turn.rating = rating;
      this.save();
      votes.up.setAttribute("aria-pressed", rating === "up" ? "true" : "false");
      votes.down.setAttribute("aria-pressed", rating === "down" ? "true" : "false");
      status.textContent = T.ui.feedback_thanks;
      if (!row.querySelector(".comment-form")) row.appendChild(this.renderComment(turn, status));
    }

    renderComment(turn, status) {
      var self = this;
      var id = "bpd-comment-" + turn.reply.id;
      var input = el("input", { id: id, type: "text", maxlength: "2000", placeholder: T.ui.comment_placeholder });
      var form = el(
        "form",
        { class: "comment-form" },
        el("label", { for: id, class: "sr-only" }, T.ui.comment_label),
        input,
        el("button", { class: "small-btn", type: "submit" }, T.ui.comment_send)
      );
      form.addEventListener("submit", async function (event) {
        event.preventDefault();
        if (!input.value.trim()) return;
        if (await self.postFeedback(turn.reply.id, turn.rating, input.value, status)) {
          status.textContent = T.ui.comment_thanks;
          form.remove();
        }
      });
      return form;
    }

    async postFeedback(answerId, rating, comment, status) {
      try {
        var response = await fetch(this.api + "/api/feedback", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ answer_id: answerId, rating: rating, comment: comment }),
        });
        if (!response.ok) throw new Error(await errorMessage(response));
        return true;
      } catch (error) {
        status.textContent = T.ui.feedback_failed + (error && error.message ? error.message : String(error));
        return false;
      }
    }
  }

  window.customElements.define(TAG, BpdRagChat);

  function mount() {
    if (document.querySelector(TAG)) return;
    var widget = document.createElement(TAG);
    if (scriptApi) widget.setAttribute("api", scriptApi);
    document.body.appendChild(widget);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
