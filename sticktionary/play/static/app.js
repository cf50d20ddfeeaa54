// The chat page: a Telegram-like client of the sandbox's simulation API (/sim). It reads a chat's
// transcript, follows its changes over server-sent events (/sim/stream), and acts as the player:
// messages with /sim/message, button presses with /sim/press.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  config: null, commands: {}, bot: null, group: null, identity: null,
  generation: 0, stream: null, next: 0, rows: new Map(), pending: new Map(), answered: new Set(), live: false,
  pinned: true,  // the view follows new messages while the reader is at the bottom
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  const data = await response.json();
  if (data.ok === false) throw new Error(data.error || data.description || response.statusText);
  return data.result === undefined ? data : data.result;
}

const userId = () => state.identity.user_ids[state.bot.language];
// A group ("Sticker friends") is one chat for all its members: its key is its id, and who acts is the identity.
const chatKey = () => (state.group ? {token: state.bot.token, chat_id: state.group.chat_id, user_id: userId()}
                                   : {token: state.bot.token, user_id: userId()});
const chatQuery = () => (state.group ? `chat_id=${state.group.chat_id}` : `user_id=${userId()}`);
const fileUrl = (fileId) => `/sim/file/${encodeURIComponent(fileId)}`;
const colour = (n) => `c${Math.abs(n) % 6}`;
const tint = (person) => [1, 4, 3, 5][state.config.identities.indexOf(person) % 4];  // one colour per person

function avatar(letter, n, small) {
  const node = el("div", `avatar ${colour(n)}${small ? " small" : ""}`, letter);
  node.setAttribute("aria-hidden", "true");
  return node;
}

// ------------------------------------------------------------------ chooser
function renderChooser() {
  const bots = $("bots");
  bots.replaceChildren();
  state.config.bots.forEach((bot, n) => {
    const item = el("button", "item" + (bot === state.bot && !state.group ? " active" : ""));
    item.dataset.language = bot.language;
    const text = el("div", "item-text");
    text.append(el("div", "item-title", bot.title), el("div", "item-sub", `@${bot.username} · ${bot.framework}`));
    item.append(avatar(bot.language === "zh" ? "中" : "EN", n + 2, true), text);
    item.onclick = () => choose(bot, state.identity);
    bots.append(item);
  });
  (state.config.groups || []).forEach((group, n) => {
    const item = el("button", "item" + (group === state.group ? " active" : ""));
    item.dataset.group = group.chat_id;
    const text = el("div", "item-text");
    text.append(el("div", "item-title", group.title), el("div", "item-sub", `group · ${group.members.join(", ")}`));
    item.append(avatar("👥", n + 4, true), text);
    item.onclick = () => choose(state.config.bots.find((b) => b.token === group.token), state.identity, group);
    bots.append(item);
  });
  const people = $("identities");
  people.replaceChildren();
  state.config.identities.forEach((person) => {
    const item = el("button", "item" + (person === state.identity ? " active" : ""));
    item.dataset.identity = person.name;
    const text = el("div", "item-text");
    const title = el("div", "item-title", person.name);
    if (person.moderator) title.append(el("span", "tag", "moderator"));
    text.append(title, el("div", "item-sub", `Telegram user ${person.user_ids[state.bot.language]}`));
    item.append(avatar(person.name[0], tint(person), true), text);
    item.onclick = () => choose(state.bot, person, state.group);
    people.append(item);
  });
}

function choose(bot, identity, group = null) {
  document.querySelector(".app").classList.remove("sidebar-open");
  if (bot === state.bot && identity === state.identity && group === state.group) return;
  state.bot = bot;
  state.group = group;
  state.identity = identity;
  history.replaceState(null, "", `#${group ? `g${group.chat_id}` : bot.language}/${identity.name}`);
  renderChooser();
  openChat();
}

// ------------------------------------------------------------------ the chat
async function openChat() {
  const generation = ++state.generation;
  if (state.stream) state.stream.close();
  state.stream = null;
  state.next = 0;
  state.rows.clear();
  state.pending.clear();
  state.answered.clear();
  state.live = false;
  state.pinned = true;
  const {bot, identity, group} = state;
  $("messages").replaceChildren();
  $("head-title").textContent = group ? group.title : bot.title;
  $("head-sub").textContent = group ? `group · ${group.members.join(", ")} · @${bot.username}` : `bot · @${bot.username}`;
  $("head-avatar").replaceWith(Object.assign(avatar(bot.language === "zh" ? "中" : "EN", state.config.bots.indexOf(bot) + 2),
                                             {id: "head-avatar"}));
  const chip = $("identity-chip");
  chip.replaceChildren(avatar(identity.name[0], tint(identity)), el("span", "name", identity.name));
  chip.title = `Playing as ${identity.name}${identity.moderator ? " (moderator)" : ""} — switch`;
  $("text").placeholder = bot.language === "zh" ? "发消息" : "Message";
  $("menu-button").textContent = bot.language === "zh" ? "≡ 菜单" : "≡ Menu";
  document.documentElement.lang = bot.language === "zh" ? "zh-CN" : "en";
  hideCommands();
  const transcript = await api(`/sim/transcript?token=${encodeURIComponent(bot.token)}&${chatQuery()}`);
  if (generation !== state.generation) return;
  transcript.forEach((entry, index) => onEntry(index, entry));
  state.live = true;
  showStart(transcript.length === 0 && !group);
  scrollDown(true);
  follow(generation);
}

function follow(generation) {
  const stream = new EventSource(`/sim/stream?token=${encodeURIComponent(state.bot.token)}&${chatQuery()}&since=${state.next}`);
  state.stream = stream;
  stream.addEventListener("entry", (event) => {
    if (generation !== state.generation) return;
    const {index, entry} = JSON.parse(event.data);
    onEntry(index, entry);
  });
  stream.addEventListener("answer", (event) => {
    if (generation === state.generation) onAnswer(JSON.parse(event.data));
  });
  stream.addEventListener("delete", (event) => {
    if (generation !== state.generation) return;
    const row = state.rows.get(JSON.parse(event.data).message_id);
    if (row) row.remove();
  });
  stream.onerror = () => {
    // Reconnect from where we are, not from the start the browser would replay.
    stream.close();
    if (generation === state.generation) setTimeout(() => generation === state.generation && follow(generation), 1000);
  };
}

function onEntry(index, entry) {
  if (index < state.next) return;
  state.next = index + 1;
  showStart(false);
  if ("press" in entry) {
    if ("answer" in entry) onAnswer({callback_id: entry.callback_id, text: entry.answer, alert: entry.alert,
                                     url: entry.url, user_id: entry.user_id});
    return;
  }
  if (entry.by === "system") return;  // the bot added to a group: its hello says so
  const existing = state.rows.get(entry.message_id);
  if (entry.edit && existing) {
    fill(existing, entry);
    scrollDown(state.pinned);  // an edit that makes a message taller must not push the newest out of sight
    return;
  }
  const mine = entry.by === "user" && (!state.group || (entry.from || {}).id === userId());
  const row = el("div", `row ${mine ? "out" : "in"}`);
  row.dataset.messageId = entry.message_id;
  fill(row, entry);
  state.rows.set(entry.message_id, row);
  $("messages").append(row);
  scrollDown(state.pinned || entry.by === "user");
}

function time(seconds) {
  const at = new Date(seconds * 1000);
  return `${String(at.getHours()).padStart(2, "0")}:${String(at.getMinutes()).padStart(2, "0")}`;
}

function media(kind, file, onload) {
  const video = kind === "sticker" && file.is_video;
  const node = el(video ? "video" : "img", kind === "photo" ? "photo" : "");
  if (video) Object.assign(node, {autoplay: true, loop: true, muted: true, playsInline: true});
  else node.alt = kind;
  node.src = fileUrl(file.file_id);
  node.addEventListener(video ? "loadeddata" : "load", onload);
  node.addEventListener("error", onload);
  return node;
}

function fill(row, message) {
  // An edit replacing a picture (editMessageMedia) keeps the message's height until the new one has
  // loaded: the message does not blink down to its caption and the chat below does not jump.
  const height = row.offsetHeight;
  row.replaceChildren();
  const bubble = el("div", "bubble");
  const stick = () => { row.style.minHeight = ""; scrollDown(state.pinned); };
  if (message.sticker || (message.animation && !message.caption)) {
    bubble.classList.add("sticker");
    bubble.append(media("sticker", message.sticker || message.animation, stick));
  } else if (message.photo || message.animation) {
    bubble.classList.add("media");
    const file = message.photo ? message.photo[message.photo.length - 1] : message.animation;
    bubble.append(media("photo", file, stick));
  } else if (message.document) {
    const link = el("a", "text", `📎 ${message.document.file_id}`);
    link.href = fileUrl(message.document.file_id);
    bubble.append(link);
  }
  if (message.via_bot) bubble.prepend(el("div", "via", `via @${message.via_bot.username}`));  // inline mode
  const text = message.text ?? message.caption;
  if (state.group && message.from && !message.from.is_bot && message.from.id !== userId()) {
    bubble.append(el("div", "sender", message.from.first_name));  // another member, as a group shows them
  }
  if (text) bubble.append(el("div", "text", text));
  if (!text && !bubble.childElementCount) bubble.append(el("div", "text", "(unsupported message)"));
  if (message.edit_date) bubble.classList.add("edited");
  const meta = el("span", "meta", time(message.edit_date || message.date));
  if (bubble.querySelector(".text")) bubble.querySelector(".text").append(meta);
  else bubble.append(meta);
  row.append(bubble);
  if (height && bubble.querySelector("img, video")) row.style.minHeight = `${height}px`;
  const rows = (message.reply_markup || {}).inline_keyboard;
  if (rows && rows.length) {
    const keyboard = el("div", "keyboard");
    for (const buttons of rows) {
      const line = el("div", "kb-row");
      for (const button of buttons) {
        const node = el("button", "", button.text);
        node.type = "button";
        if (button.callback_data) node.dataset.callback = button.callback_data;
        if (button.url) node.onclick = () => window.open(button.url, "_blank", "noopener");
        else node.onclick = () => press(message.message_id, button.callback_data, node);
        line.append(node);
      }
      keyboard.append(line);
    }
    row.append(keyboard);
  }
}

async function press(messageId, data, node) {
  node.classList.add("loading");
  try {
    const result = await api("/sim/press", {...chatKey(), message_id: messageId, data});
    if (state.answered.has(result.callback_id)) node.classList.remove("loading");  // the answer came first
    else state.pending.set(result.callback_id, node);
    setTimeout(() => node.classList.remove("loading"), 8000);
  } catch (error) {
    node.classList.remove("loading");
    toast(`Could not press: ${error.message}`);
  }
}

function onAnswer({callback_id, text, alert, url, user_id}) {
  if (state.group && user_id != null && user_id !== userId()) return;  // another member's answer: theirs alone
  const node = state.pending.get(callback_id);
  if (node) node.classList.remove("loading");
  state.pending.delete(callback_id);
  state.answered.add(callback_id);
  if (!state.live || !text) return;
  if (alert) {
    $("alert-text").textContent = text;
    // A deep link (t.me/<bot>?start=…) opens the private chat with that bot, as a Telegram client does.
    const bot = url && state.config.bots.find((b) => url.includes(`t.me/${b.username}?`));
    $("alert-open").hidden = !bot;
    $("alert-open").onclick = () => { $("alert").hidden = true; choose(bot, state.identity); };
    $("alert").hidden = false;
  } else {
    toast(text);
  }
}

let toastTimer = 0;
function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 2600);
}

function nearBottom(margin = 80) {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < margin;
}

function scrollDown(force) {
  if (!force) return;
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function showStart(empty) {
  $("start-bar").hidden = !empty;
  $("composer").hidden = empty;
}

// ------------------------------------------------------------------ sending
async function send(text) {
  text = text.trim();
  if (!text) return;
  hideCommands();
  const {bot, identity} = state;
  try {
    await api("/sim/message", {...chatKey(), text, first_name: identity.name, language_code: bot.language});
  } catch (error) {
    toast(`Not sent: ${error.message}`);
  }
}

function commandList() {
  if (state.group) return state.group.commands;
  const bot = state.commands[state.bot.token] || {};
  const own = bot[state.bot.language] || bot[""] || Object.values(bot)[0] || [];
  return state.identity.moderator ? [...own, ...state.config.moderator_commands] : own;
}

function showCommands(prefix) {
  const box = $("commands");
  const matching = commandList().filter((c) => `/${c.command}`.startsWith(prefix));
  box.replaceChildren();
  for (const command of matching) {
    const item = el("button");
    item.type = "button";
    item.append(el("span", "command", `/${command.command}`), el("span", "description", command.description));
    item.onclick = () => { $("text").value = ""; send(`/${command.command}`); $("text").focus(); };
    box.append(item);
  }
  box.hidden = matching.length === 0;
}

function hideCommands() { $("commands").hidden = true; }

// ------------------------------------------------------------------ start
async function main() {
  const [config, bots] = await Promise.all([api("/play/config"), api("/sim/bots")]);
  state.config = config;
  for (const bot of bots) state.commands[bot.token] = bot.commands;
  const [language, name] = decodeURIComponent(location.hash.slice(1)).split("/");
  const group = (config.groups || []).find((g) => `g${g.chat_id}` === language) || null;
  const bot = group ? config.bots.find((b) => b.token === group.token)
                    : config.bots.find((b) => b.language === language) || config.bots[0];
  const identity = config.identities.find((i) => i.name === name) || config.identities[0];
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    send(input.value);
    input.value = "";
  });
  $("text").addEventListener("input", (event) => {
    const value = event.target.value;
    if (value.startsWith("/") && !value.includes(" ")) showCommands(value);
    else hideCommands();
  });
  $("text").addEventListener("keydown", (event) => { if (event.key === "Escape") hideCommands(); });
  $("menu-button").onclick = () => ($("commands").hidden ? showCommands("/") : hideCommands());
  $("start").onclick = () => send("/start");
  $("messages").addEventListener("scroll", () => { state.pinned = nearBottom(); });
  $("alert-ok").onclick = () => { $("alert").hidden = true; };
  const toggle = () => document.querySelector(".app").classList.toggle("sidebar-open");
  $("open-sidebar").onclick = toggle;
  $("identity-chip").onclick = toggle;
  $("scrim").onclick = toggle;
  window.addEventListener("hashchange", () => {
    const [lang, name] = decodeURIComponent(location.hash.slice(1)).split("/");
    const g = (config.groups || []).find((x) => `g${x.chat_id}` === lang) || null;
    const b = g ? config.bots.find((x) => x.token === g.token) : config.bots.find((x) => x.language === lang);
    const i = config.identities.find((x) => x.name === name);
    if (b && i) choose(b, i, g);
  });
  state.bot = bot;
  state.group = group;
  state.identity = identity;
  renderChooser();
  openChat();
}

main().catch((error) => toast(`The page could not start: ${error.message}`));
