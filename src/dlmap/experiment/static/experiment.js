// The subject's page of a dlmap 2AFC study: one trial at a time, answers by arrow key or click.
"use strict";

const GAP_PX = 16; // the CSS gap between the two images (experiment.css)
const token = document.body.dataset.token;
const $ = (id) => document.getElementById(id);
let trial = null; // the trial on screen: {id, training, left, right}
let shownAt = 0; // performance.now() when both images were on screen
let shownAtIso = "";
let pausedMs = 0; // time paused while this trial was shown
let pausedSince = null;
let busy = true; // no answer accepted while loading, sending or paused

function show(section) {
  for (const id of ["instructions", "experiment", "paused", "done"]) $(id).hidden = id !== section;
}

function fail(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function zoomEstimate() {
  // Browsers do not expose the zoom level; outer/inner width approximates it on desktops.
  const zoom = window.outerWidth / window.innerWidth;
  return Number.isFinite(zoom) && zoom > 0 ? zoom : 1;
}

// One image pixel per screen pixel: CSS size = natural size / devicePixelRatio, never rescaled.
function layout() {
  const ratio = window.devicePixelRatio || 1;
  const left = $("left");
  const right = $("right");
  for (const img of [left, right]) {
    if (!img.naturalWidth) return;
    img.style.width = img.naturalWidth / ratio + "px";
    img.style.height = img.naturalHeight / ratio + "px";
  }
  const needed = (left.naturalWidth + right.naturalWidth) / ratio + GAP_PX;
  const notice = $("notice");
  // (headless browsers may report a screen smaller than their window: trust the larger)
  if (needed > Math.max(window.screen.width, window.innerWidth)) {
    notice.textContent = "This screen is too small to show both images side by side at " +
      "their native resolution: please scroll to see each image in full (they are never scaled).";
  } else if (needed > $("pair").clientWidth) {
    notice.textContent = "The window is too narrow for both images side by side: please " +
      "enlarge (maximise) the window, or scroll. Do not zoom the page.";
  } else {
    notice.textContent = "";
  }
  notice.hidden = notice.textContent === "";
}

function progressText(state) {
  if (state.trial && state.trial.training) {
    return `Training ${state.training_answered + 1} of ${state.training_total}`;
  }
  return `Comparison ${Math.min(state.answered + 1, state.total)} of ${state.total}`;
}

function loaded(img) {
  return new Promise((resolve, reject) => {
    if (img.complete && img.naturalWidth) resolve();
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("an image could not be loaded"));
  });
}

async function present(state) {
  busy = true;
  if (state.finished) {
    trial = null;
    show("done");
    return;
  }
  trial = state.trial;
  $("progress").textContent = progressText(state);
  $("pair").style.visibility = "hidden";
  $("left").src = trial.left;
  $("right").src = trial.right;
  await Promise.all([loaded($("left")), loaded($("right"))]);
  layout();
  $("pair").style.visibility = "visible";
  $("pair").dataset.trial = trial.id; // which trial is on screen (for automated checks)
  shownAt = performance.now();
  shownAtIso = new Date().toISOString();
  pausedMs = 0;
  busy = pausedSince !== null;
}

async function request(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const response = await fetch(`/s/${token}/${path}`, options);
  const data = await response.json();
  return {status: response.status, data};
}

async function answer(side, input) {
  if (busy || trial === null) return;
  busy = true;
  const body = {
    trial: trial.id, chosen: side, input,
    response_ms: Math.max(0, performance.now() - shownAt - pausedMs),
    shown_at: shownAtIso, answered_at: new Date().toISOString(),
    screen_width: window.screen.width, screen_height: window.screen.height,
    device_pixel_ratio: window.devicePixelRatio || 1, zoom: zoomEstimate(),
    window_width: window.innerWidth, window_height: window.innerHeight,
  };
  try {
    const {status, data} = await request("answer", body);
    if (status === 200) {
      await present(data.state);
    } else if (status === 409) {
      await present((await request("state")).data); // answered elsewhere: go on from there
    } else {
      fail(`The answer was not accepted (${status}: ${data.error}). Please reload the page.`);
    }
  } catch (error) {
    busy = false; // a network failure: the same answer may be given again
    fail(`Could not reach the server (${error.message}); please try again.`);
  }
}

function pause() {
  pausedSince = performance.now();
  busy = true;
  show("paused");
}

function resume() {
  if (pausedSince !== null) pausedMs += performance.now() - pausedSince;
  pausedSince = null;
  show("experiment");
  busy = trial === null;
}

async function start() {
  show("experiment");
  try {
    await present((await request("state")).data);
  } catch (error) {
    fail(`Could not start (${error.message}); please reload the page.`);
  }
}

document.addEventListener("keydown", (event) => {
  if ($("experiment").hidden) return;
  if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    event.preventDefault();
    answer(event.key === "ArrowLeft" ? "left" : "right", "key");
  }
});
$("left").addEventListener("click", () => answer("left", "click"));
$("right").addEventListener("click", () => answer("right", "click"));
$("start").addEventListener("click", start);
$("start").disabled = false; // enabled once this script runs
$("pause").addEventListener("click", pause);
$("resume").addEventListener("click", resume);
window.addEventListener("resize", layout);
