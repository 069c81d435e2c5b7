// The console's script. Pages work without it; with it, running things and connection
// figures update live, dangerous buttons ask first, and policy steps can be reordered by
// dragging or by keyboard.
"use strict";

// Live regions: <section data-live="<event stream>" data-refresh="<fragment URL>"> is
// redrawn from the fragment whenever the stream says `change`, and once more on `end`.
// (The server gives every event some data: a browser drops events that have none.)
function live(section) {
  const source = new EventSource(section.dataset.live);
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(section.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (r.redirected || r.status === 401) {
        // The login lapsed: stop, and let the page take the visitor to the login form.
        source.close();
        window.location.reload();
        return;
      }
      if (r.ok) swap(section, await r.text());
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  source.addEventListener("change", refresh);
  source.addEventListener("end", () => {
    source.close();
    refresh();
    // Buttons that only make sense while it runs (cancel) go once it has ended.
    document.querySelectorAll("[data-hide-when-done]").forEach((el) => el.remove());
  });
}

// Replaces a region's content, keeping what the visitor had: the focused control (by id,
// or by the form's action and the button's text) and which <details> were open.
function swap(section, html) {
  const active = document.activeElement;
  const focus = active && section.contains(active)
    ? { id: active.id, action: active.form ? active.form.getAttribute("action") : null, text: active.textContent }
    : null;
  const open = Array.from(section.querySelectorAll("details[open]")).map((d) => d.id).filter(Boolean);
  section.innerHTML = html;
  open.forEach((id) => { const d = document.getElementById(id); if (d) d.open = true; });
  if (!focus) return;
  let target = focus.id ? document.getElementById(focus.id) : null;
  if (!target && focus.action) {
    target = Array.from(section.querySelectorAll("form")).filter((f) => f.getAttribute("action") === focus.action)
      .map((f) => f.querySelector("button")).find((b) => b && b.textContent === focus.text) || null;
  }
  if (target) target.focus();
}

// Polled regions: <section data-poll="<fragment URL>" data-every="<seconds>"> is redrawn from
// the fragment every so many seconds while the page is in view. A lapsed login (the fragment
// answers with a redirect to the login form) stops it; a failed fetch is tried again next time.
function poll(section) {
  const every = Math.max(Number(section.dataset.every) || 10, 2) * 1000;
  async function tick() {
    if (!document.hidden) {
      try {
        const r = await fetch(section.dataset.poll, { credentials: "same-origin", headers: { "Accept": "text/html" } });
        if (r.redirected || r.status === 401) return;
        if (r.ok) swap(section, await r.text());
      } catch {
        // Offline for a moment.
      }
    }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
}

// Forms with data-confirm="question" ask before they are sent, also those a live region
// swapped in after the page loaded.
function confirmations() {
  document.addEventListener("submit", (e) => {
    const form = e.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) e.preventDefault();
  });
}

// The campaign form: <select data-policy-channels> whose options list their channels in
// data-channels; only the content fields (<fieldset data-channel-fields="sms">) of the chosen
// policy's channels are shown and sent.
function channelFields(select) {
  function show() {
    const option = select.selectedOptions[0];
    const used = ((option && option.dataset.channels) || "").split(" ");
    document.querySelectorAll("fieldset[data-channel-fields]").forEach((f) => {
      const on = used.includes(f.dataset.channelFields);
      f.hidden = !on;
      f.disabled = !on;
    });
  }
  select.addEventListener("change", show);
  show();
}

// The policy editor: <ol class="steps" data-reorder> whose <li> are steps. Each step moves by
// dragging its handle, by its Up/Down buttons, or with Alt+ArrowUp/ArrowDown inside it. The
// form submits the fields in the order the steps are shown, so the order saved is the order seen.
function reorderable(list) {
  const status = document.getElementById(list.dataset.status || "");
  const say = (text) => { if (status) status.textContent = text; };
  const steps = () => Array.from(list.children);
  const name = (li) => {
    const sel = li.querySelector("select[name=channel]");
    return sel ? sel.value : "step";
  };
  function renumber() {
    steps().forEach((li, i) => {
      const n = li.querySelector(".number");
      if (n) n.textContent = String(i + 1);
      li.dataset.index = String(i);
    });
  }
  function move(li, by) {
    const all = steps();
    const to = all.indexOf(li) + by;
    if (to < 0 || to >= all.length) return;
    if (by < 0) list.insertBefore(li, all[to]); else list.insertBefore(li, all[to].nextSibling);
    renumber();
    say(name(li) + " is now step " + (to + 1) + " of " + all.length);
  }
  list.addEventListener("click", (e) => {
    const btn = e.target.closest("button[data-move]");
    if (btn) {
      e.preventDefault();
      const li = btn.closest("li");
      move(li, btn.dataset.move === "up" ? -1 : 1);
      btn.focus();
      return;
    }
    const rm = e.target.closest("button[data-remove]");
    if (rm) {
      e.preventDefault();
      if (steps().length > 1) {
        const li = rm.closest("li");
        const next = li.nextElementSibling || li.previousElementSibling;
        li.remove();
        renumber();
        say("step removed");
        // Focus stays in the list: on the step that took its place.
        const target = next && next.querySelector("select[name=channel]");
        if (target) target.focus();
      }
    }
  });
  list.addEventListener("keydown", (e) => {
    if (!e.altKey || (e.key !== "ArrowUp" && e.key !== "ArrowDown")) return;
    // In a drop-down list Alt+Down opens it, as it always does.
    if (e.target.tagName === "SELECT") return;
    const li = e.target.closest("li");
    if (!li) return;
    e.preventDefault();
    move(li, e.key === "ArrowUp" ? -1 : 1);
    e.target.focus();
  });
  let dragged = null;
  list.addEventListener("dragstart", (e) => {
    dragged = e.target.closest("li");
    if (!dragged) return;
    dragged.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", dragged.dataset.index || "");
  });
  list.addEventListener("dragover", (e) => {
    const over = e.target.closest("li");
    if (!dragged || !over || over === dragged) return;
    e.preventDefault();
    steps().forEach((li) => li.classList.toggle("over", li === over));
  });
  list.addEventListener("drop", (e) => {
    const over = e.target.closest("li");
    if (!dragged || !over || over === dragged) return;
    e.preventDefault();
    const all = steps();
    if (all.indexOf(dragged) < all.indexOf(over)) list.insertBefore(dragged, over.nextSibling);
    else list.insertBefore(dragged, over);
    renumber();
    say(name(dragged) + " is now step " + (steps().indexOf(dragged) + 1));
  });
  list.addEventListener("dragend", () => {
    steps().forEach((li) => li.classList.remove("over", "dragging"));
    dragged = null;
  });
  const add = document.querySelector("[data-add-step]");
  const template = document.getElementById(list.dataset.template || "");
  if (add && template) {
    add.addEventListener("click", (e) => {
      e.preventDefault();
      const li = template.content.firstElementChild.cloneNode(true);
      list.appendChild(li);
      renumber();
      say("step " + steps().length + " added");
      const first = li.querySelector("select[name=channel]");
      if (first) first.focus();
    });
  }
  renumber();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("ol[data-reorder]").forEach(reorderable);
  document.querySelectorAll("select[data-policy-channels]").forEach(channelFields);
  confirmations();
});
