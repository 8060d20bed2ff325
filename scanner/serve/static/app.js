// dfscan serve's page: pick or drop images, POST them to /v1/scan, show each verdict.
// Plain DOM, no framework, no CDN. Every user-supplied string goes in through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("dfscan-key") || "", model: null, pending: 0 };

function headers() {
  return state.key ? { Authorization: "Bearer " + state.key } : {};
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text) {
  $("status").textContent = text;
}

async function loadModel() {
  let res;
  try {
    res = await fetch("/v1/model", { headers: headers() });
  } catch (err) {
    $("model").textContent = "cannot reach the server: " + err;
    return;
  }
  if (res.status === 401) {
    $("key-form").hidden = false;
    $("model").textContent = "this server needs an API key";
    $("key-note").textContent = state.key ? "that key was refused" : "";
    return;
  }
  if (!res.ok) {
    $("model").textContent = "cannot read the model: HTTP " + res.status;
    return;
  }
  state.model = await res.json();
  $("key-form").hidden = !state.key;
  const m = state.model;
  const box = $("model");
  box.textContent = "";
  box.append("model ", el("code", "", m.name), " · sha256 ", el("code", "", m.sha256.slice(0, 12)),
    " · " + m.arch + " · threshold " + m.threshold + " · " + m.provider);
  box.title = m.sha256 + (m.threshold_rule ? " — threshold rule: " + m.threshold_rule : "");
  document.body.dataset.modelSha256 = m.sha256;
}

function card(file) {
  const li = el("li", "card");
  li.dataset.verdict = "pending";
  const img = el("img");
  img.alt = "thumbnail of " + file.name;
  img.src = URL.createObjectURL(file);
  li.append(img, el("div", "name", file.name), el("div", "verdict", "scanning…"));
  return li;
}

function pct(x) {
  return Math.max(0, Math.min(100, x * 100)).toFixed(1) + "%";
}

function show(li, r) {
  const verdict = r.error ? "error" : r.verdict;
  li.dataset.verdict = verdict;
  li.dataset.pFake = r.p_fake === null ? "" : String(r.p_fake);
  li.dataset.threshold = String(r.threshold);
  li.querySelector(".verdict").textContent =
    r.error ? "could not score" : r.verdict === "fake" ? "looks generated" : "looks real";
  if (r.error) {
    li.append(el("div", "score", r.error));
  } else {
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    fill.style.width = pct(r.p_fake);
    const mark = el("div", "mark");
    mark.style.left = pct(r.threshold);
    mark.title = "threshold " + r.threshold;
    bar.append(fill, mark);
    const relation = r.p_fake >= r.threshold ? " ≥ " : " < ";
    const text = "p_fake " + r.p_fake.toFixed(3) + relation + "threshold " + r.threshold;
    li.append(bar, el("div", "score", text));
  }
  if (r.width) {
    li.append(el("div", "meta", r.width + "×" + r.height + " " + (r.format || "")));
  }
  li.append(el("div", "prov", r.provenance ? "declares: " + r.provenance
    : "no provenance declared in the file"));
}

function fail(li, message) {
  li.dataset.verdict = "error";
  li.querySelector(".verdict").textContent = "not scanned";
  li.append(el("div", "score", message));
}

async function post(files, cards) {
  const form = new FormData();
  files.forEach((f) => form.append("file", f, f.name));
  let res;
  try {
    res = await fetch("/v1/scan", { method: "POST", body: form, headers: headers() });
  } catch (err) {
    cards.forEach((li) => fail(li, "network error: " + err));
    return;
  }
  let body = null;
  try {
    body = await res.json();
  } catch (err) {
    body = { error: "HTTP " + res.status };
  }
  if (!res.ok) {
    if (res.status === 401) $("key-form").hidden = false;
    cards.forEach((li) => fail(li, body.error || "HTTP " + res.status));
    return;
  }
  body.results.forEach((r, i) => show(cards[i], r));
}

async function upload(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  const per = (state.model && state.model.limits && state.model.limits.max_files) || 16;
  const cards = files.map(card);
  $("results").prepend(...cards); // the newest upload first, its files in their order
  state.pending += 1;
  document.body.dataset.state = "scanning";
  setStatus("scanning " + files.length + " image" + (files.length === 1 ? "" : "s") + "…");
  const jobs = [];
  for (let i = 0; i < files.length; i += per) {
    jobs.push(post(files.slice(i, i + per), cards.slice(i, i + per)));
  }
  await Promise.all(jobs);
  state.pending -= 1;
  if (!state.pending) {
    setStatus("done: " + files.length + " image" + (files.length === 1 ? "" : "s"));
    document.body.dataset.state = "done";
  }
}

// ?probe=data:image/png;base64,...&probe-name=x.png: the page's own self-check. The image is
// turned into a File and goes through upload(), the code path of dropped and picked files.
async function probe() {
  const params = new URLSearchParams(location.search);
  const urls = params.getAll("probe").filter((u) => u.startsWith("data:image/"));
  if (!urls.length) return;
  const names = params.getAll("probe-name");
  const files = [];
  for (let i = 0; i < urls.length; i++) {
    const blob = await (await fetch(urls[i])).blob();
    files.push(new File([blob], names[i] || "probe-" + i, { type: blob.type }));
  }
  await upload(files);
}

function wire() {
  const drop = $("drop");
  $("pick").addEventListener("change", (e) => upload(e.target.files));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => upload(e.dataTransfer.files));
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("dfscan-key", state.key);
    loadModel();
  });
}

wire();
loadModel().then(probe);
