"""The study page: one self-contained HTML document (inline CSS and JS, no external assets).

It talks to the JSON API of :mod:`blindbench.study.server`: ``GET /api/state?token=TOKEN`` and
``POST /api/answer``. The participant's secret token travels in the URL (``/?t=TOKEN``, the link the
experimenter hands out), so a reload resumes; without it the page asks for the code.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image comparison study</title>
<style>
  [hidden] { display: none !important; }
  body { font-family: system-ui, sans-serif; margin: 0; background: #f3f3f3; color: #111; }
  main { max-width: 1800px; margin: 0 auto; padding: .5rem 1.5rem; }
  h1 { font-size: 1.25rem; font-weight: 600; margin: .2rem 0 .4rem; }
  #count { margin: .2rem 0; }
  #progress { height: 8px; background: #ddd; border-radius: 4px; overflow: hidden; margin-bottom: .6rem; }
  #bar { height: 100%; width: 0; background: #2a7a4b; transition: width .2s; }
  /* The input and both candidates are laid out in one row (or the input above the pair) and sized by the
     script (fit) to fill the window without scrolling, at most 2x their pixel size. */
  #shown, .pair { display: flex; gap: 1.5rem; justify-content: center; align-items: flex-start; }
  #shown.stacked { flex-direction: column; align-items: center; gap: .6rem; }
  #shown.row #input { padding-right: 1.5rem; border-right: 1px solid #bbb; }
  #input img { margin: 4px 0; }  /* level with the candidates inside their 4px button borders */
  figure { margin: 0; display: flex; flex-direction: column; align-items: center; text-align: center; }
  figcaption { margin-top: .3rem; color: #444; }
  button.choice { border: 4px solid transparent; border-radius: 4px; background: none; padding: 0; cursor: pointer; }
  button.choice:hover, button.choice:focus-visible { border-color: #2a7a4b; outline: none; }
  button.choice:disabled { cursor: wait; opacity: .6; }
  img { display: block; height: auto; background: #ccc; image-rendering: auto; }
  #error { color: #a00; min-height: 1.2em; margin: .4rem 0 0; }
  kbd { border: 1px solid #999; border-radius: 3px; padding: 0 .3em; background: #fff; }
</style>
</head>
<body data-state="loading">
<main>
  <h1>Which restored image looks more realistic?</h1>
  <section id="login" hidden>
    <form id="login-form">
      <label>Your code (the part after ?t= in your link) <input id="code" autocomplete="off" required></label>
      <button type="submit">Start</button>
    </form>
  </section>
  <section id="study" hidden>
    <p id="count"></p>
    <div id="progress"><div id="bar"></div></div>
    <div id="shown" class="row">
    <figure id="input" hidden><img id="input-img" alt="damaged input"><figcaption>damaged input</figcaption></figure>
    <div class="pair">
      <figure>
        <button class="choice" id="left" type="button"><img id="left-img" alt="left result"></button>
        <figcaption>left: click, <kbd>&larr;</kbd> or <kbd>1</kbd></figcaption>
      </figure>
      <figure>
        <button class="choice" id="right" type="button"><img id="right-img" alt="right result"></button>
        <figcaption>right: click, <kbd>&rarr;</kbd> or <kbd>2</kbd></figcaption>
      </figure>
    </div>
    </div>
  </section>
  <section id="done" hidden><p>All questions are answered. Thank you!</p></section>
  <p id="error" role="alert"></p>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let token = new URLSearchParams(location.search).get("t");
let current = null;
let busy = true;
let shownAt = 0;

function show(which, state) {
  for (const id of ["login", "study", "done"]) $(id).hidden = id !== which;
  document.body.dataset.state = state || which;
}

async function api(path, body) {
  const options = body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: "bad reply from the server"}; }
  return {status: response.status, data: data};
}

const MAX_SCALE = 2;  // never show an image more than twice its pixel size

function fits(heightToo) {
  // everything in the window (no scrolling down) and within the page's margins (nothing cut off at the sides)
  if (heightToo && document.querySelector("main").getBoundingClientRect().bottom + window.scrollY > innerHeight) {
    return false;
  }
  const room = $("shown").getBoundingClientRect();
  return ["input", "left", "right"].every((id) => {
    const box = $(id).getBoundingClientRect();
    return $(id).hidden || (box.left >= room.left - 0.5 && box.right <= room.right + 0.5);
  });
}

function fit() {
  // The largest scale (at most MAX_SCALE) at which the input, both candidates and the choice fit the window,
  // for the layout (all in a row, or the input above the pair) that allows the larger one.
  const images = ["input-img", "left-img", "right-img"].map($).filter((image) => image.naturalWidth > 0);
  if (!current || !images.length) return;
  const size = (scale) => {
    for (const image of images) image.style.width = Math.floor(image.naturalWidth * scale) + "px";
  };
  const largest = (heightToo) => {
    size(MAX_SCALE);
    if (fits(heightToo)) return MAX_SCALE;
    let low = 0, high = MAX_SCALE;
    for (let i = 0; i < 16; i++) {
      const middle = (low + high) / 2;
      size(middle);
      if (fits(heightToo)) low = middle; else high = middle;
    }
    return low;
  };
  let best = {scale: -1, layout: "row"};
  for (const layout of $("input").hidden ? ["row"] : ["row", "stacked"]) {
    $("shown").className = layout;
    const scale = largest(true);
    if (scale > best.scale + 1e-3) best = {scale: scale, layout: layout};
  }
  $("shown").className = best.layout;
  if (best.scale <= 0) {  // too small a window for any layout: fit the width and let the page scroll
    $("shown").className = best.layout = "stacked";
    best.scale = largest(false);
  }
  size(best.scale);
  document.body.dataset.layout = best.layout;
}

window.addEventListener("resize", () => { if (current) fit(); });

async function render(state) {
  const shown = Math.min(state.answered + 1, state.total);
  $("count").textContent = "Question " + shown + " of " + state.total + " (" + state.answered + " answered)";
  $("bar").style.width = (100 * state.answered / state.total) + "%";
  document.body.dataset.answered = state.answered;
  if (state.done) { current = null; show("done"); return; }
  current = state.question;
  document.body.dataset.question = current.question;
  show("study", "loading");
  $("shown").style.visibility = "hidden";  // never let a choice be made on the previous pair
  const images = [$("left-img"), $("right-img")];
  $("left-img").src = current.left;
  $("right-img").src = current.right;
  $("input").hidden = !current.input;
  if (current.input) { $("input-img").src = current.input; images.push($("input-img")); }
  else $("input-img").removeAttribute("src");
  try { await Promise.all(images.map((image) => image.decode())); }
  catch (e) { $("error").textContent = "could not load the images; please reload the page"; return; }
  fit();
  $("shown").style.visibility = "visible";
  $("left").disabled = $("right").disabled = false;
  document.body.dataset.state = "ready";
  shownAt = performance.now();
  busy = false;
}

async function load() {
  $("error").textContent = "";
  if (!token) { show("login"); $("code").focus(); return; }
  const reply = await api("/api/state?token=" + encodeURIComponent(token));
  if (reply.status !== 200) {
    $("error").textContent = reply.data.error || ("error " + reply.status);
    token = null;
    show("login");
    return;
  }
  await render(reply.data);
}

async function choose(side) {
  if (busy || !current) return;
  busy = true;
  $("left").disabled = $("right").disabled = true;
  document.body.dataset.state = "saving";
  const body = {token: token, question: current.question, choice: side,
                elapsed_ms: Math.round(performance.now() - shownAt)};
  let reply;
  try { reply = await api("/api/answer", body); } catch (e) { reply = {status: 0, data: {error: String(e)}}; }
  if (reply.status === 200) { $("error").textContent = ""; await render(reply.data.state); return; }
  if (reply.status === 409) { await load(); return; }  // answered already (another tab): move on
  $("error").textContent = (reply.data.error || "could not save the answer") + "; please try again";
  $("left").disabled = $("right").disabled = false;
  document.body.dataset.state = "ready";
  busy = false;
}

$("left").addEventListener("click", () => choose("left"));
$("right").addEventListener("click", () => choose("right"));
document.addEventListener("keydown", (event) => {
  if ($("study").hidden || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === "ArrowLeft" || event.key === "1") { event.preventDefault(); choose("left"); }
  if (event.key === "ArrowRight" || event.key === "2") { event.preventDefault(); choose("right"); }
});
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("code").value.trim();
  history.replaceState(null, "", "?t=" + encodeURIComponent(token));
  load();
});
load();
</script>
</body>
</html>
"""
