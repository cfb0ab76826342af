// The console's only script (CSP: script-src 'self'): copy buttons.
// <button type="button" class="copy" data-copy="TEXT">Copy</button>
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy[data-copy]");
  if (!button) return;
  navigator.clipboard.writeText(button.dataset.copy).then(
    () => { button.textContent = "Copied"; },
    () => { button.textContent = "Copy failed: select the text"; },
  );
});
