// The console's only script: live refresh of [data-refresh] regions, a confirmation
// before every action, and "select all" on the dead letters. No inline script anywhere,
// so the Content-Security-Policy can forbid it.
"use strict";

function refreshEvery(region) {
  const seconds = Number(region.dataset.refresh);
  window.setInterval(async () => {
    const answer = await fetch(window.location.href, { credentials: "same-origin" });
    if (!answer.ok) return;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.getElementById(region.id);
    if (fresh) region.replaceChildren(...fresh.childNodes);
  }, seconds * 1000);
}

document.querySelectorAll("[data-refresh]").forEach(refreshEvery);

document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});

document.querySelectorAll("input[data-select-all]").forEach((box) => {
  box.addEventListener("change", () => {
    document
      .querySelectorAll(`input[name="${box.dataset.selectAll}"]`)
      .forEach((other) => { other.checked = box.checked; });
  });
});
