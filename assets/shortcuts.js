() => {
  // Keyboard shortcuts for reviewers. They never fire while the focus is in a text field, a radio, a select, a
  // dropdown or any other input, so typing "a" in a rationale is text, not "accept", and letters typed while a
  // label radio has focus do nothing. Esc leaves the field so the keys work again.
  // Digits choose the triage label; Shift+digits rate the rationale (two different jobs, two different keys).
  if (window.__r2dShortcuts) return;
  window.__r2dShortcuts = true;
  const isTyping = (el) => !!el && (el.isContentEditable || ["TEXTAREA", "SELECT", "INPUT"].includes(el.tagName) ||
    !!el.closest?.("[role=listbox], [role=combobox], [role=radiogroup], [role=option]"));
  const BUTTONS = { a: "r2d-accept", s: "r2d-submit", k: "r2d-skip", f: "r2d-flag", u: "r2d-undo", c: "r2d-check",
                    n: "r2d-next", p: "r2d-prev", r: "r2d-next-unreviewed" };
  const FOCUS = { e: "#r2d-rationale textarea", m: "#r2d-comment textarea" };
  // One action at a time: a key pressed while the previous save or move is still on its way would act on the
  // old queue position, so it waits its turn (none is dropped: up to 50 wait). The lock opens SETTLE_MS after
  // the queue line or the status line changes, so Gradio has finished the event that changed them and takes
  // the next click (or after 4 s).
  const SETTLE_MS = 150;
  let busyUntil = 0;
  const waiting = [];
  // the rendered text only: the block around it also shows Gradio's progress timer while the event runs
  const watched = () => ["r2d-queue", "r2d-status"].map((id) => {
    const el = document.getElementById(id);
    return (el?.querySelector(".prose") || el)?.innerText || "";
  }).join("|");
  let seen = "";
  setInterval(() => {
    const now = watched();
    if (now !== seen) { seen = now; busyUntil = Math.min(busyUntil, Date.now() + SETTLE_MS); }
    if (Date.now() >= busyUntil && waiting.length) clickById(waiting.shift());
  }, 50);
  const clickById = (id) => {
    const el = document.getElementById(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (button && !button.disabled && button.offsetParent !== null) {
      seen = watched();
      busyUntil = Date.now() + 4000;
      button.click();
      return true;
    }
    return false;
  };
  const pick = (groupId, n) => {
    const inputs = document.querySelectorAll(`#${groupId} input[type=radio]`);
    if (n >= 1 && n <= inputs.length) { inputs[n - 1].click(); return true; }
    return false;
  };
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.altKey || ev.isComposing) return;
    const target = ev.target;
    const typing = isTyping(target);
    // Ctrl+Z outside a text box would undo the last programmatic fill of some box (and empty it): never do that
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z" && !typing) { ev.preventDefault(); return; }
    if (ev.ctrlKey || ev.metaKey) return;
    if (typing) {
      if (ev.key === "Escape") target.blur();
      return;
    }
    const digit = /^Digit([1-9])$/.exec(ev.code || "");
    if (digit) {
      if (pick(ev.shiftKey ? "r2d-rating" : "r2d-final-label", Number(digit[1]))) ev.preventDefault();
      return;
    }
    const key = ev.key.toLowerCase();
    const comment = document.querySelector("#r2d-comment textarea");
    if (key === "f" && comment && !comment.value.trim()) {
      // a flag needs a reason: F goes to the comment box first; Esc then F flags with what was typed
      comment.placeholder = "Why do you flag this case? Type the reason, then Esc and F.";
      comment.focus();
      ev.preventDefault();
    } else if (key in BUTTONS) {
      ev.preventDefault();
      if (Date.now() < busyUntil || waiting.length) {
        if (waiting.length < 50) waiting.push(BUTTONS[key]);  // still busy with the previous action
        return;
      }
      clickById(BUTTONS[key]);
    } else if (key in FOCUS) {
      const box = document.querySelector(FOCUS[key]);
      if (box) { box.focus(); ev.preventDefault(); }
    }
  });
  // Tab moves between the review controls, not through every plot toolbar button
  const untab = () => document.querySelectorAll(".modebar a, .modebar button, .modebar-btn")
    .forEach((el) => el.setAttribute("tabindex", "-1"));
  new MutationObserver(untab).observe(document.body, { childList: true, subtree: true });
}
