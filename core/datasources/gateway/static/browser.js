// The study browser: QIDO-RS searches and series thumbnails through this gateway's own DICOMweb routes.
// Plain JavaScript, no build step. Address parameters: ?source=NAME&q=TEXT&study=UID; #token=... for a token.
"use strict";

const TOKEN_KEY = "datasources-gateway-token";
const state = { source: null, sources: [], selected: null, blobs: [] };

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

(function takeTokenFromFragment() {
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

class NeedsToken extends Error {}

async function api(path, accept) {
  const headers = { Accept: accept || "application/dicom+json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    document.getElementById("token-form").hidden = false;
    throw new NeedsToken("this gateway needs a token");
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function root() {
  return encodeURIComponent(state.source) + "/dicom-web";
}

function value(dataset, tag) {
  const element = dataset && dataset[tag];
  if (!element || !element.Value || element.Value.length === 0) return "";
  const first = element.Value[0];
  if (first && typeof first === "object" && "Alphabetic" in first) return first.Alphabetic || "";
  return first;
}

function values(dataset, tag) {
  const element = dataset && dataset[tag];
  return element && element.Value ? element.Value : [];
}

// one way for every name: "FAMILY, GIVEN MIDDLE" (DICOM PN is family^given^middle^prefix^suffix)
function personName(text) {
  const [family, ...rest] = String(text || "").split("^").map((p) => p.trim());
  const given = rest.filter(Boolean).join(" ");
  return family && given ? `${family}, ${given}` : family || given;
}

function formatDate(text) {
  const s = String(text || "");
  return /^\d{8}$/.test(s) ? `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}` : s;
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

function updateAddress() {
  const params = new URLSearchParams();
  if (state.source) params.set("source", state.source);
  const q = document.getElementById("q").value.trim();
  if (q) params.set("q", q);
  if (state.selected) params.set("study", state.selected);
  history.replaceState(null, "", location.pathname + "?" + params.toString());
}

async function searchStudies(text) {
  const base = root() + "/studies?limit=200";
  if (!text) return (await api(base)).json();
  // one box, several QIDO searches: a study matches on name, ID, accession or description
  const v = encodeURIComponent(text);
  const queries = [`PatientName=*${v}*`, `PatientID=${v}*`, `AccessionNumber=${v}*`, `StudyDescription=*${v}*`];
  const answers = await Promise.all(queries.map((q) => api(`${base}&${q}`).then((r) => r.json())));
  const seen = new Map();
  for (const rows of answers) for (const row of rows) seen.set(value(row, "0020000D"), row);
  return [...seen.values()];
}

async function runSearch() {
  const text = document.getElementById("q").value.trim();
  setStatus("Searching…");
  let studies;
  try {
    studies = await searchStudies(text);
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  studies.sort((a, b) => String(value(b, "00080020")).localeCompare(String(value(a, "00080020"))));
  const body = document.querySelector("#studies tbody");
  body.replaceChildren();
  for (const study of studies) {
    const uid = value(study, "0020000D");
    const row = document.createElement("tr");
    row.dataset.uid = uid;
    cell(row, personName(value(study, "00100010")), "name");
    cell(row, value(study, "00100020"));
    cell(row, formatDate(value(study, "00080020")));
    cell(row, values(study, "00080061").join(", "));
    cell(row, value(study, "00081030"), "description");  // names and descriptions wrap: the column may be narrow
    cell(row, value(study, "00080050"));
    cell(row, String(value(study, "00201208")));
    row.addEventListener("click", () => openStudy(uid, study));
    body.appendChild(row);
  }
  setStatus(`${studies.length} stud${studies.length === 1 ? "y" : "ies"}` + (text ? ` matching “${text}”` : ""));
  updateAddress();
  return studies;
}

async function thumbnail(img, path) {
  try {
    const response = await api(path, "image/png");
    const url = URL.createObjectURL(await response.blob());
    state.blobs.push(url);
    img.src = url;
  } catch (error) {
    img.classList.add("missing");
    img.alt = "no thumbnail: " + error.message;
  }
}

async function openStudy(uid, study) {
  state.selected = uid;
  for (const row of document.querySelectorAll("#studies tbody tr")) {
    row.classList.toggle("selected", row.dataset.uid === uid);
  }
  for (const url of state.blobs.splice(0)) URL.revokeObjectURL(url);
  const panel = document.getElementById("series-panel");
  const list = document.getElementById("series");
  panel.hidden = false;
  list.replaceChildren();
  const title = study ? `${personName(value(study, "00100010"))} · ${value(study, "00081030")}` : uid;
  document.getElementById("series-title").textContent = title;
  updateAddress();
  let series;
  try {
    series = await (await api(`${root()}/studies/${encodeURIComponent(uid)}/series`)).json();
  } catch (error) {
    document.getElementById("series-title").textContent = `${title}: ${error.message}`;
    return;
  }
  series.sort((a, b) => Number(value(a, "00200011") || 0) - Number(value(b, "00200011") || 0));
  const loads = [];
  for (const item of series) {
    const seriesUid = value(item, "0020000E");
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.className = "thumb";
    img.alt = "first frame";
    li.appendChild(img);
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = `${value(item, "00080060")} #${value(item, "00200011")}`;
    li.appendChild(label);
    const description = document.createElement("div");
    description.textContent = value(item, "0008103E");
    li.appendChild(description);
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = `${value(item, "00201209")} images`;
    li.appendChild(meta);
    list.appendChild(li);
    const path = `${root()}/studies/${encodeURIComponent(uid)}/series/${encodeURIComponent(seriesUid)}/thumbnail`;
    loads.push(thumbnail(img, path));
  }
  await Promise.all(loads);
}

async function loadSources() {
  const sources = await (await api("api/sources", "application/json")).json();
  state.sources = sources;
  const select = document.getElementById("source");
  select.replaceChildren();
  for (const source of sources) {
    const option = document.createElement("option");
    option.value = source.name;
    option.textContent = source.friendlyName || source.name;
    select.appendChild(option);
  }
  const asked = new URLSearchParams(location.search).get("source");
  const chosen = sources.find((s) => s.name === asked) || sources.find((s) => s.default) || sources[0];
  state.source = chosen ? chosen.name : null;
  select.value = state.source;
}

async function start() {
  const params = new URLSearchParams(location.search);
  document.getElementById("q").value = params.get("q") || "";
  try {
    await loadSources();
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  const studies = (await runSearch()) || [];
  const wanted = params.get("study");
  if (wanted) {
    const study = studies.find((s) => value(s, "0020000D") === wanted);
    await openStudy(wanted, study);
  }
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  state.selected = null;
  document.getElementById("series-panel").hidden = true;
  runSearch();
});

document.getElementById("source").addEventListener("change", (event) => {
  state.source = event.target.value;
  state.selected = null;
  document.getElementById("series-panel").hidden = true;
  runSearch();
});

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const given = document.getElementById("token").value.trim();
  if (given) sessionStorage.setItem(TOKEN_KEY, given);
  document.getElementById("token-form").hidden = true;
  start();
});

start();
