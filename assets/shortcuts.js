() => {
  // Keyboard shortcuts for reviewers. They never fire while the focus is in a text field, so typing
  // "a" in a rationale is text, not "accept". Esc leaves a text field so the keys work again.
  if (window.__r2dShortcuts) return;
  window.__r2dShortcuts = true;
  const TEXT_TYPES = ["text", "search", "email", "password", "number", "tel", "url", "textarea", ""];
  const isTyping = (el) => !!el && (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && TEXT_TYPES.includes((el.type || "").toLowerCase())));
  const BUTTONS = { a: "r2d-accept", s: "r2d-submit", c: "r2d-check", n: "r2d-next", p: "r2d-prev" };
  const clickById = (id) => {
    const el = document.getElementById(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (button && !button.disabled) { button.click(); return true; }
    return false;
  };
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    const target = ev.target;
    if (isTyping(target)) {
      if (ev.key === "Escape") target.blur();
      return;
    }
    const key = ev.key.toLowerCase();
    if (key in BUTTONS) {
      if (clickById(BUTTONS[key])) ev.preventDefault();
    } else if (key === "e") {
      const box = document.querySelector("#r2d-rationale textarea");
      if (box) { box.focus(); ev.preventDefault(); }
    } else if (/^[1-5]$/.test(key)) {
      const input = document.querySelector(`#r2d-rating input[value="${key}"]`);
      if (input) { input.click(); ev.preventDefault(); }
    }
  });
}
