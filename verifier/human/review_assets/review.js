// capcheck review: a click or a number key moves the selected image's file
// (POST /move); the folders on disk stay the truth, and ingest reads them.
"use strict";

const cards = () => [...document.querySelectorAll(".card")];
let current = null;
let moves = 0;
// One request at a time, in the order the keys were pressed: a second key
// must act on the folder the first one left the image in.
let queue = Promise.resolve();
const later = (job) => { queue = queue.then(job, job); };

function select(card) {
  if (!card) return;
  if (current) current.classList.remove("current");
  current = card;
  card.classList.add("current");
  card.focus({ preventScroll: true });
  card.scrollIntoView({ block: "nearest" });
}

function say(text, bad) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = bad ? "bad" : "";
}

async function post(url, body) {
  const answer = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await answer.json();
  if (!answer.ok) throw new Error(data.error || `HTTP ${answer.status}`);
  return data;
}

async function move(card, to) {
  try {
    const data = await post("/move", { path: card.dataset.path, to });
    card.dataset.path = data.path;
    card.querySelector("img").src = data.src;
    for (const b of card.querySelectorAll(".choices button")) {
      b.setAttribute("aria-pressed", String(b.dataset.to === to));
    }
    card.classList.add("sorted");
    moves += 1;
    say(`${card.querySelector(".name").textContent} → ${to}/  (${moves} move(s) on this page)`);
    return true;
  } catch (error) {
    say(error.message, true);
    return false;
  }
}

// A worst fit's caption (loss/): saved as edited, or said to be right. The
// server answers with the card as it is now, which replaces this one.
async function decide(card, act) {
  const box = card.querySelector("textarea");
  if (act === "right" && box.value !== box.defaultValue) {
    return say(`${card.querySelector(".name").textContent}: the caption has unsaved changes: save them, or reload `
      + "to drop them", true);
  }
  try {
    const body = { path: card.dataset.path, sha: card.dataset.sha };
    if (act === "save") body.text = box.value;
    const data = await post(act === "save" ? "/caption" : "/right", body);
    const fresh = document.createElement("template");
    fresh.innerHTML = data.card;
    const next = fresh.content.firstElementChild;
    card.replaceWith(next);
    if (current === card) { current = null; select(next); }
    // the count of what waits, from the folders and the store again, before the line that says it is done
    const page = new DOMParser().parseFromString(await (await fetch("/")).text(), "text/html");
    document.querySelector("header p").replaceWith(page.querySelector("header p"));
    say(data.line);
  } catch (error) {
    say(error.message, true);
  }
}

// The cards again from the folders (after ingest the captions changed),
// keeping the selection and what this page moved.
async function redraw() {
  const fresh = new DOMParser().parseFromString(await (await fetch("/")).text(), "text/html");
  const at = current ? cards().indexOf(current) : 0;
  const sorted = new Set(cards().filter((c) => c.classList.contains("sorted")).map((c) => c.dataset.path));
  // a caption being edited is not lost to a redraw
  const typing = new Map([...document.querySelectorAll(".card textarea")].filter((t) => t.value !== t.defaultValue)
    .map((t) => [t.closest(".card").dataset.path, t.value]));
  for (const section of document.querySelectorAll("section")) section.remove();
  document.querySelector("footer").before(...fresh.querySelectorAll("section"));
  for (const c of cards()) if (sorted.has(c.dataset.path)) c.classList.add("sorted");
  for (const c of cards()) if (typing.has(c.dataset.path)) c.querySelector("textarea").value = typing.get(c.dataset.path);
  current = null;
  select(cards()[Math.min(at, cards().length - 1)]);
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "TEXTAREA") {  // typing a caption: the keys are text, but Ctrl+Enter saves
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      const card = event.target.closest(".card");
      later(() => decide(card, "save"));
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.tagName === "BUTTON" && event.key === "Enter") {
    return;
  }
  const step = { ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1 }[event.key];
  const digit = /^[0-9]$/.test(event.key);
  if (!step && !digit) return;
  event.preventDefault();
  later(async () => {
    const list = cards();
    if (!list.length) return;
    if (!current) select(list[0]);
    const at = list.indexOf(current);
    if (step) return select(list[Math.max(0, Math.min(list.length - 1, at + step))]);
    const button = current.querySelector(`.choices button[data-key="${event.key}"]`);
    if (button && await move(current, button.dataset.to)) select(list[Math.min(list.length - 1, at + 1)]);
  });
});

document.addEventListener("click", (event) => {
  const button = event.target.closest(".choices button");
  const act = event.target.closest(".decide button");
  const card = event.target.closest(".card");
  if (card && event.target.tagName !== "TEXTAREA") select(card);  // focusing the card would leave the box
  if (button) later(() => move(card, button.dataset.to));
  if (act) later(() => decide(card, act.dataset.act));
});

document.getElementById("ingest").addEventListener("click", (event) => {
  const button = event.currentTarget;
  const result = document.getElementById("result");
  button.disabled = true;
  result.textContent = "ingesting…";
  later(async () => {
    try {
      const data = await post("/ingest", {});
      await redraw();  // first, so that what the result says is already on the cards
      result.textContent = data.lines.join("\n");
      result.className = "";
      say("ingested: the captions now say what the folders say");
    } catch (error) {
      result.textContent = error.message;
      result.className = "bad";
    } finally {
      button.disabled = false;
    }
  });
});

select(cards()[0]);
