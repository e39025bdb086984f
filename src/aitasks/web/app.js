// The aitasks web page: conversations, their history, and a prompt box whose replies stream in.
// Plain JavaScript against the gateway's own API; no build step and nothing from a CDN.
"use strict";

// `attachments`: images uploaded for the next chat turn ({id, url}).
const state = { conversation: null, models: [], busy: false, attachments: [] };
const $ = (id) => document.getElementById(id);

function apiKey() { return localStorage.getItem("aitasks-api-key"); }

async function api(path, options = {}) {
  // A form (an upload) sets its own multipart content type.
  const json = !(options.body instanceof FormData);
  const headers = { ...(json ? { "content-type": "application/json" } : {}), ...(options.headers || {}) };
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    const entered = prompt("This server needs an API key:");
    if (entered) {
      localStorage.setItem("aitasks-api-key", entered.trim());
      return api(path, options);
    }
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

// --- models -----------------------------------------------------------------------------------

async function loadModels() {
  const listing = await (await api("/v1/models")).json();
  state.models = listing.data;
  const picker = $("model");
  picker.replaceChildren();
  for (const kind of ["chat", "image"]) {
    const group = document.createElement("optgroup");
    group.label = kind === "chat" ? "Chat" : "Images";
    for (const model of state.models.filter((m) => m.kind === kind)) {
      const option = new Option(`${model.id}${model.served_by === "mock" ? " (mock)" : ""}`, model.id);
      option.dataset.kind = kind;
      group.append(option);
    }
    picker.append(group);
  }
  // The model used last on this browser, else the table's first chat model (the table's order,
  // as /v1/models lists it: the operator's choice of what comes first).
  const remembered = localStorage.getItem("aitasks-model");
  const known = (id) => state.models.some((m) => m.id === id);
  const firstChat = state.models.find((m) => m.kind === "chat");
  if (remembered && known(remembered)) picker.value = remembered;
  else if (firstChat) picker.value = firstChat.id;
}

function rememberModel() { localStorage.setItem("aitasks-model", $("model").value); }

// "1 message", "2 messages": a count and its noun, the noun plural unless the count is one.
function counted(count, noun) { return `${count} ${noun}${count === 1 ? "" : "s"}`; }

function selectedKind() { return $("model").selectedOptions[0]?.dataset.kind || "chat"; }

// --- conversations ----------------------------------------------------------------------------

async function loadConversations() {
  const listing = await (await api("/v1/conversations?limit=100")).json();
  const list = $("conversations");
  list.replaceChildren();
  for (const conversation of listing.data) {
    const item = document.createElement("li");
    item.setAttribute("data-testid", "conversation");
    item.dataset.id = conversation.id;
    item.classList.toggle("active", conversation.id === state.conversation);
    item.textContent = conversation.title || "(untitled)";
    const meta = document.createElement("small");
    meta.textContent = [counted(conversation.message_count, "message"), conversation.model].filter(Boolean).join(" · ");
    item.append(meta);
    item.addEventListener("click", () => openConversation(conversation.id));
    list.append(item);
  }
}

async function openConversation(id) {
  state.conversation = id;
  localStorage.setItem("aitasks-conversation", id || "");
  $("rename").hidden = $("delete").hidden = !id;
  $("messages").replaceChildren();
  $("conversation-title").textContent = "New conversation";
  if (id) {
    const [info, history] = await Promise.all([
      api(`/v1/conversations/${id}`).then((r) => r.json()),
      api(`/v1/conversations/${id}/history`).then((r) => r.json()),
    ]);
    $("conversation-title").textContent = info.title || "(untitled)";
    for (const message of history.messages) addMessage(message.role, message.content, message.images);
  }
  await loadConversations();
}

function addMessage(role, text, images = []) {
  const item = document.createElement("li");
  item.className = role;
  item.setAttribute("data-testid", role === "user" ? "message-user" : "message-assistant");
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text || "";
  item.append(body);
  for (const url of images || []) addImage(item, url, role === "user" ? "attached image" : "generated image");
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function addImage(item, url, alt = "generated image") {
  const image = document.createElement("img");
  image.src = url;
  image.alt = alt;
  item.append(image);
}

// --- attaching images -------------------------------------------------------------------------

// Uploads each image file (POST /v1/files) and shows it above the prompt until it is sent.
async function attach(files) {
  for (const file of files) {
    if (!file.type.startsWith("image/")) continue;
    const form = new FormData();
    form.append("file", file, file.name || "pasted.png");
    const made = await (await api("/v1/files", { method: "POST", body: form })).json();
    state.attachments.push({ id: made.id, url: made.url });
  }
  showAttachments();
}

function showAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  state.attachments.forEach((attached, index) => {
    const figure = document.createElement("figure");
    figure.setAttribute("data-testid", "attachment");
    const image = document.createElement("img");
    image.src = attached.url;
    image.alt = "attached image";
    const drop = document.createElement("button");
    drop.type = "button";
    drop.textContent = "×";
    drop.title = "Remove";
    drop.addEventListener("click", () => { state.attachments.splice(index, 1); showAttachments(); });
    figure.append(image, drop);
    box.append(figure);
  });
  box.hidden = state.attachments.length === 0;
}

function imagesOf(transfer) {
  return [...(transfer?.files || [])].filter((file) => file.type.startsWith("image/"));
}

// --- sending ----------------------------------------------------------------------------------

// Reads a Server-Sent Events response, calling onEvent(name, data) for each event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.busy) return;
  state.busy = true;
  $("send").disabled = true;
  showError(null);
  const kind = selectedKind();
  rememberModel();
  const attached = kind === "chat" ? state.attachments : [];
  addMessage("user", text, attached.map((a) => a.url));
  const reply = addMessage("assistant", "");
  const body = reply.querySelector(".text");
  const status = document.createElement("span");
  status.className = "status";
  reply.append(status);
  try {
    const path = kind === "chat" ? "/v1/chat/completions" : "/v1/images/generations";
    const response = await api(path, {
      method: "POST",
      body: JSON.stringify({
        prompt: text, model: $("model").value, conversation_id: state.conversation, stream: true,
        ...(attached.length ? { images: attached.map((a) => a.id) } : {}),
      }),
    });
    $("prompt").value = "";
    if (attached.length) { state.attachments = []; showAttachments(); }
    await readEvents(response, (name, data) => {
      if (name === "status") status.textContent = data.status === "SUCCESS" ? "" : data.status.toLowerCase();
      else if (name === "delta") body.textContent += data.delta;
      else if (name === "error") status.textContent = `stream interrupted: ${data.error?.message || ""}`;
      else if (name === "done") {
        status.textContent = data.status === "SUCCESS" ? "" : `${data.status.toLowerCase()}: ${data.error?.message || ""}`;
        if (data.status === "SUCCESS" && kind === "chat") body.textContent = data.result;
        if (data.status === "SUCCESS" && kind === "image") for (const url of data.result) addImage(reply, url);
        if (!state.conversation) state.conversation = data.conversation_id;
      }
    });
    localStorage.setItem("aitasks-conversation", state.conversation || "");
    $("rename").hidden = $("delete").hidden = !state.conversation;
    await loadConversations();
    const current = document.querySelector("#conversations li.active");
    if (current) $("conversation-title").textContent = current.firstChild.textContent;
  } catch (error) {
    reply.remove();
    showError(error);
  } finally {
    state.busy = false;
    $("send").disabled = false;
  }
}

async function rename() {
  const title = prompt("New title:", $("conversation-title").textContent);
  if (!title || !title.trim()) return;
  await api(`/v1/conversations/${state.conversation}`, { method: "PATCH", body: JSON.stringify({ title: title.trim() }) });
  $("conversation-title").textContent = title.trim();
  await loadConversations();
}

async function remove() {
  if (!confirm("Delete this conversation, its messages and its images?")) return;
  await api(`/v1/conversations/${state.conversation}`, { method: "DELETE" });
  await openConversation(null);
}

// --- batches ----------------------------------------------------------------------------------

// The caller's latest batches: those running with a progress bar, and the ones just ended.
const BATCH_POLL_MS = 3000;

async function showBatches() {
  const listing = await (await api("/v1/batches?limit=5")).json();
  const recent = listing.data.filter((b) => !["completed", "failed", "expired", "cancelled"].includes(b.status)
    || Date.now() - Date.parse(b.finished_at) < 10 * 60 * 1000);
  const list = $("batch-list");
  list.replaceChildren();
  for (const batch of recent) {
    const done = batch.counts.succeeded + batch.counts.failed;
    const item = document.createElement("li");
    item.dataset.testid = "batch";
    item.dataset.status = batch.status;
    const bar = document.createElement("progress");
    bar.max = Math.max(1, batch.counts.total);
    bar.value = done;
    const label = document.createElement("small");
    const failed = batch.counts.failed ? `, ${batch.counts.failed} failed` : "";
    label.textContent = `${batch.id.slice(0, 8)} ${batch.status}: ${done}/${batch.counts.total}${failed}`;
    item.append(label, bar);
    list.append(item);
  }
  $("batches").hidden = recent.length === 0;
}

function pollBatches() {
  showBatches().catch(() => { /* shown again at the next poll */ })
    .finally(() => setTimeout(pollBatches, BATCH_POLL_MS));
}

function guard(handler) {
  return (...args) => handler(...args).catch(showError);
}

window.addEventListener("DOMContentLoaded", guard(async () => {
  $("composer").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
  });
  $("new-conversation").addEventListener("click", guard(() => openConversation(null)));
  $("rename").addEventListener("click", guard(rename));
  $("delete").addEventListener("click", guard(remove));
  $("model").addEventListener("change", rememberModel);
  $("attach").addEventListener("click", () => $("attach-input").click());
  $("attach-input").addEventListener("change", guard(async (event) => {
    await attach([...event.target.files]);
    event.target.value = "";
  }));
  $("prompt").addEventListener("paste", guard(async (event) => {
    const images = imagesOf(event.clipboardData);
    if (images.length) { event.preventDefault(); await attach(images); }
  }));
  const composer = $("composer");
  composer.addEventListener("dragover", (event) => {
    if ([...(event.dataTransfer?.types || [])].includes("Files")) { event.preventDefault(); composer.classList.add("dropping"); }
  });
  composer.addEventListener("dragleave", () => composer.classList.remove("dropping"));
  composer.addEventListener("drop", guard(async (event) => {
    event.preventDefault();
    composer.classList.remove("dropping");
    await attach(imagesOf(event.dataTransfer));
  }));
  await loadModels();
  pollBatches();
  await openConversation(localStorage.getItem("aitasks-conversation") || null).catch(() => openConversation(null));
}));
