// Copy buttons: <button data-copy="ID"> copies the text of element ID. The only script of the
// catalog pages (served from this server, so the Content-Security-Policy allows no inline code).
"use strict";

function copyByHand(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  const done = document.execCommand("copy");
  area.remove();
  return done;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent;
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch (error) {
    copied = copyByHand(text);  // no clipboard API here (or no permission): the old way
  }
  button.textContent = copied ? "Copied" : "Select and copy";
});
