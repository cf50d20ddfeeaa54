// Inline mode in the chat page, as Telegram shows it: typing `@<bot username> so tired` in the composer
// asks the bot (/sim/inline) and shows its stickers in a strip above the composer; scrolling to the end
// of the strip asks for the next page; tapping a sticker sends it into the chat "via @<bot>"
// (/sim/choose, which also tells the bot which result was chosen). Uses app.js's globals.
"use strict";

const inline = {asked: 0, query: null, offset: "", more: "", loading: false, timer: 0};

function inlineQuery(value) {
  const prefix = `@${state.bot.username} `;
  return value.toLowerCase().startsWith(prefix.toLowerCase()) ? value.slice(prefix.length) : null;
}

function hideInline() {
  inline.query = null;
  inline.asked += 1;  // answers still on their way are for nothing now
  $("inline").hidden = true;
  $("inline").replaceChildren();
}

async function askInline(query, offset) {
  const asked = ++inline.asked;
  inline.loading = true;
  const {identity, bot} = state;
  try {
    const answer = await api("/sim/inline", {...chatKey(), query, offset, first_name: identity.name,
                                             language_code: bot.language});
    if (asked !== inline.asked) return;
    const strip = $("inline");
    if (!offset) strip.replaceChildren();
    for (const result of answer.results) strip.append(inlineItem(result, query));
    inline.more = answer.next_offset;
    strip.hidden = strip.childElementCount === 0;
    if (!offset) strip.scrollLeft = 0;
  } catch (error) {
    if (asked === inline.asked) toast(`Inline search failed: ${error.message}`);
  } finally {
    if (asked === inline.asked) inline.loading = false;
  }
}

function inlineItem(result, query) {
  const item = el("button", "inline-result");
  item.type = "button";
  item.dataset.resultId = result.id;
  const picture = el("img");
  picture.alt = "sticker";
  picture.src = fileUrl(result.sticker_file_id);
  item.append(picture);
  item.onclick = () => chooseInline(result, query);
  return item;
}

async function chooseInline(result, query) {
  const {identity, bot} = state;
  $("text").value = "";
  hideInline();
  try {
    await api("/sim/choose", {...chatKey(), result_id: result.id, query, send: true, first_name: identity.name,
                              language_code: bot.language});
  } catch (error) {
    toast(`Not sent: ${error.message}`);
  }
}

function onComposerInput(event) {
  const query = inlineQuery(event.target.value);
  clearTimeout(inline.timer);
  if (query === null) { if (inline.query !== null) hideInline(); return; }
  inline.query = query;
  inline.timer = setTimeout(() => askInline(query, ""), 250);  // as a client waits for the typing to pause
}

document.addEventListener("DOMContentLoaded", () => {
  $("text").addEventListener("input", onComposerInput);
  $("inline").addEventListener("scroll", (event) => {
    const strip = event.target;
    if (inline.more && !inline.loading && strip.scrollLeft + strip.clientWidth > strip.scrollWidth - 80) {
      askInline(inline.query, inline.more);
    }
  });
});
