// Rebond page: sign-in, then the session socket. Only input, resize, frame
// acknowledgements, keepalives and (when the policy allows it and the person
// switched it on) microphone sound go up (see docs/protocol.md).

import { Sound } from './sound.js';

const SUBPROTOCOL = 'rebond.v3';
const $ = (id) => document.getElementById(id);

// PC/AT set-1 scancodes by physical key (KeyboardEvent.code): the workstation's
// keyboard layout turns them into characters, so AZERTY, AltGr and dead keys work.
const SCANCODES = {
  Escape: 0x01, Digit1: 0x02, Digit2: 0x03, Digit3: 0x04, Digit4: 0x05, Digit5: 0x06, Digit6: 0x07,
  Digit7: 0x08, Digit8: 0x09, Digit9: 0x0a, Digit0: 0x0b, Minus: 0x0c, Equal: 0x0d, Backspace: 0x0e,
  Tab: 0x0f, KeyQ: 0x10, KeyW: 0x11, KeyE: 0x12, KeyR: 0x13, KeyT: 0x14, KeyY: 0x15, KeyU: 0x16,
  KeyI: 0x17, KeyO: 0x18, KeyP: 0x19, BracketLeft: 0x1a, BracketRight: 0x1b, Enter: 0x1c,
  ControlLeft: 0x1d, KeyA: 0x1e, KeyS: 0x1f, KeyD: 0x20, KeyF: 0x21, KeyG: 0x22, KeyH: 0x23,
  KeyJ: 0x24, KeyK: 0x25, KeyL: 0x26, Semicolon: 0x27, Quote: 0x28, Backquote: 0x29,
  ShiftLeft: 0x2a, Backslash: 0x2b, KeyZ: 0x2c, KeyX: 0x2d, KeyC: 0x2e, KeyV: 0x2f, KeyB: 0x30,
  KeyN: 0x31, KeyM: 0x32, Comma: 0x33, Period: 0x34, Slash: 0x35, ShiftRight: 0x36,
  NumpadMultiply: 0x37, AltLeft: 0x38, Space: 0x39, CapsLock: 0x3a, F1: 0x3b, F2: 0x3c, F3: 0x3d,
  F4: 0x3e, F5: 0x3f, F6: 0x40, F7: 0x41, F8: 0x42, F9: 0x43, F10: 0x44, NumLock: 0x45,
  ScrollLock: 0x46, Numpad7: 0x47, Numpad8: 0x48, Numpad9: 0x49, NumpadSubtract: 0x4a, Numpad4: 0x4b,
  Numpad5: 0x4c, Numpad6: 0x4d, NumpadAdd: 0x4e, Numpad1: 0x4f, Numpad2: 0x50, Numpad3: 0x51,
  Numpad0: 0x52, NumpadDecimal: 0x53, IntlBackslash: 0x56, F11: 0x57, F12: 0x58, IntlRo: 0x73,
  IntlYen: 0x7d,
};
// Keys behind the 0xE0 prefix.
const EXTENDED = {
  NumpadEnter: 0x1c, ControlRight: 0x1d, NumpadDivide: 0x35, PrintScreen: 0x37, AltRight: 0x38,
  Home: 0x47, ArrowUp: 0x48, PageUp: 0x49, ArrowLeft: 0x4b, ArrowRight: 0x4d, End: 0x4f,
  ArrowDown: 0x50, PageDown: 0x51, Insert: 0x52, Delete: 0x53, MetaLeft: 0x5b, MetaRight: 0x5c,
  ContextMenu: 0x5d,
};

const T = { // uplink message types
  KEY: 0x81, MOVE: 0x82, BUTTON: 0x83, WHEEL: 0x84, RESIZE: 0x85, ACK: 0x86, RELEASE_ALL: 0x87, KEEPALIVE: 0x88,
};
const D = { // downlink message types
  HELLO: 0x01, STATUS: 0x02, SIZE: 0x03, TILE: 0x04, FRAME_END: 0x05, POINTER: 0x06,
  POINTER_HIDDEN: 0x07, POINTER_DEFAULT: 0x08, ERROR: 0x09, NOTICE: 0x0a, SOCKET_KEY: 0x0b,
  SOUND_SETTINGS: 0x0c, SPEAKER: 0x0d, MOVES: 0x0e, CACHE_DRAWS: 0x0f, CACHE_STORES: 0x10,
};
const CODEC_MIME = { 1: 'image/png', 2: 'image/jpeg' };

let texts = {};
let lang = 'en';
let ws = null;
// This page's socket key (memory only): proves a reconnecting socket is this page's.
let socketKey = null;
let desktopW = 0, desktopH = 0, scale = 1;
let drawing = Promise.resolve();
let ended = false;
let everConnected = false;
let retries = 0;
let pointerUrl = null;
let lastMove = 0;
let noticeTimer = null;
let awaitingFrame = false;
// Flow control (docs/protocol.md, rebond-wire's FrameAcks): the worker sends while fewer
// than FRAMES_IN_FLIGHT frames are unacknowledged, and an acknowledgement covers every
// frame before it; the page acknowledges only when the worker has no room left.
const FRAMES_IN_FLIGHT = 2;
let acked = 0; // the last frame acknowledged on this socket
let sound = null;

const canvas = $('screen');
const ctx = canvas.getContext('2d', { alpha: false });
// What the page has drawn, for support and tests.
window.rebondStats = { moves: 0, fromCache: 0 };
// Where moved pixels wait while their destinations are drawn.
const moveSource = document.createElement('canvas');
const moveCtx = moveSource.getContext('2d', { alpha: false });

// Draws moved rectangles ([srcX, srcY, x, y, w, h]), every source as it was before any of them.
function drawMoves(moves) {
  let left = Infinity, top = Infinity, right = 0, bottom = 0;
  for (const [sx, sy, , , w, h] of moves) {
    left = Math.min(left, sx); top = Math.min(top, sy);
    right = Math.max(right, sx + w); bottom = Math.max(bottom, sy + h);
  }
  if (moveSource.width < right - left || moveSource.height < bottom - top) {
    moveSource.width = Math.max(moveSource.width, right - left);
    moveSource.height = Math.max(moveSource.height, bottom - top);
  }
  moveCtx.drawImage(canvas, left, top, right - left, bottom - top, 0, 0, right - left, bottom - top);
  for (const [sx, sy, x, y, w, h] of moves) ctx.drawImage(moveSource, sx - left, sy - top, w, h, x, y, w, h);
  window.rebondStats.moves += moves.length;
}

// The tile cache (docs/protocol.md): tiles the worker told the page to keep, drawn again
// when they come back. 1024 slots of at most 64×64 pixels, in a 2048×2048 canvas; the
// worker draws a slot only at the size it was kept.
const TILE = 64, SLOTS = 1024, SLOTS_PER_ROW = 32;
const kept = document.createElement('canvas');
const keptCtx = kept.getContext('2d', { alpha: false });

// The tiles of a rectangle [slot, x, y, width, height]: 64×64 from its top left corner
// (the last column and row may be smaller), row by row, in consecutive slots.
function cacheTiles([first, x0, y0, width, height]) {
  const tiles = [];
  let slot = first;
  for (let y = y0; y < y0 + height; y += TILE) {
    for (let x = x0; x < x0 + width; x += TILE) {
      tiles.push([slot, x, y, Math.min(TILE, x0 + width - x), Math.min(TILE, y0 + height - y)]);
      slot = (slot + 1) % SLOTS;
    }
  }
  return tiles;
}

function slotX(slot) { return (slot % SLOTS_PER_ROW) * TILE; }
function slotY(slot) { return Math.floor(slot / SLOTS_PER_ROW) * TILE; }

function keepTiles(rects) {
  if (kept.width !== TILE * SLOTS_PER_ROW) {
    kept.width = TILE * SLOTS_PER_ROW;
    kept.height = TILE * (SLOTS / SLOTS_PER_ROW);
  }
  for (const rect of rects) {
    for (const [slot, x, y, w, h] of cacheTiles(rect)) {
      keptCtx.drawImage(canvas, x, y, w, h, slotX(slot), slotY(slot), w, h);
    }
  }
}

function drawKept(rects) {
  for (const rect of rects) {
    for (const [slot, x, y, w, h] of cacheTiles(rect)) {
      ctx.drawImage(kept, slotX(slot), slotY(slot), w, h, x, y, w, h);
      window.rebondStats.fromCache += 1;
    }
  }
}

// Fixed-size entries of u16 fields after the type byte.
function entries(view, fields) {
  const out = [];
  for (let o = 1; o + 2 * fields <= view.byteLength; o += 2 * fields) {
    const e = [];
    for (let k = 0; k < fields; k++) e.push(view.getUint16(o + 2 * k, true));
    out.push(e);
  }
  return out;
}

function t(key) { return (texts[lang] && texts[lang][key]) || (texts.en && texts.en[key]) || key; }

async function loadTexts() {
  try {
    texts = await (await fetch('/i18n.json')).json();
  } catch { texts = {}; }
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  lang = 'en';
  for (const l of langs) {
    const p = l.toLowerCase().split('-')[0];
    if (texts[p]) { lang = p; break; }
  }
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-text]')) el.textContent = t(el.dataset.text);
}

function show(which) {
  for (const id of ['sign-in', 'second-factor', 'choose', 'progress', 'progress-bar', 'error']) $(id).classList.add('hidden');
  for (const id of which) $(id).classList.remove('hidden');
}

function showProgress(key, stage) {
  $('desktop').classList.add('hidden');
  $('panel').classList.remove('hidden');
  $('progress').textContent = t(key);
  $('progress-bar').value = stage || 0;
  show(['progress', 'progress-bar']);
}

function showError(number, message) {
  ended = true;
  if (sound) sound.stop();
  const e = (texts[lang] && texts[lang].errors && texts[lang].errors[number]) || {};
  $('error-sentence').textContent = message || e.sentence || t('network_error');
  $('error-code').textContent = `RB-${number}${e.name ? ' ' + e.name : ''}`;
  $('desktop').classList.add('hidden');
  $('panel').classList.remove('hidden');
  show(['error']);
  $('again').focus();
}

function showSignIn() {
  $('desktop').classList.add('hidden');
  $('panel').classList.remove('hidden');
  show(['sign-in']);
  $('sign-in-button').disabled = false;
  $('user').focus();
}

function viewport() {
  const dpr = 1;
  return [Math.max(200, Math.floor(window.innerWidth * dpr)), Math.max(200, Math.floor(window.innerHeight * dpr))];
}

// Between the password and the second factor, the page keeps them in memory only.
let pending = null;

async function signIn(ev) {
  ev.preventDefault();
  $('sign-in-button').disabled = true;
  pending = { user: $('user').value, password: $('password').value };
  $('password').value = '';
  await submitSignIn(null);
}

async function submitCode(ev) {
  ev.preventDefault();
  const code = $('code').value;
  $('code').value = '';
  await submitSignIn(code);
}

async function submitSignIn(code) {
  showProgress('signing_in', 0);
  const [width, height] = viewport();
  const request = { user: pending.user, password: pending.password, language: navigator.language || 'en', width, height };
  if (code !== null) request.code = code;
  if (pending.workstation) request.workstation = pending.workstation;
  let res;
  try {
    res = await fetch('/api/sign-in', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(request),
      credentials: 'same-origin',
    });
  } catch {
    pending = null;
    showError(0);
    return;
  }
  if (!res.ok) {
    let body = {};
    try { body = await res.json(); } catch { /* not JSON */ }
    if (body.second_factor) { showSecondFactor(body); return; }
    if (body.choices) { showChoices(body); return; }
    pending = null;
    // The gateway's own sentence carries details (how long to wait after too many attempts).
    showError(body.number || 14, body.message);
    return;
  }
  pending = null;
  ended = false;
  everConnected = false;
  socketKey = null; // a new sign-in holds the session: the old key means nothing
  connect();
}

function showChoices(body) {
  $('desktop').classList.add('hidden');
  $('panel').classList.remove('hidden');
  $('choose-message').textContent = body.message || '';
  const list = $('choices');
  list.replaceChildren();
  for (const url of body.choices) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = url.replace(/^rdp:\/\//, '').replace(/:3389$/, '');
    button.dataset.workstation = url;
    button.addEventListener('click', () => { pending.workstation = url; submitSignIn(null); });
    list.append(button);
  }
  show(['choose']);
  list.firstChild.focus();
}

function showSecondFactor(body) {
  $('desktop').classList.add('hidden');
  $('panel').classList.remove('hidden');
  const enrol = body.second_factor === 'enrol';
  $('enrol').classList.toggle('hidden', !enrol);
  if (enrol) {
    $('qr').src = body.qr;
    $('secret').textContent = body.secret.replace(/(.{4})/g, '$1 ').trim();
    $('enrol').dataset.otpauth = body.otpauth;
  }
  $('second-factor-message').textContent = body.message || '';
  show(['second-factor']);
  $('code').focus();
}

function send(bytes) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
}

function msg(type, size) {
  const buf = new ArrayBuffer(size);
  const view = new DataView(buf);
  view.setUint8(0, type);
  return [buf, view];
}

function sendKey(scancode, extended, down) {
  const [b, v] = msg(T.KEY, 4);
  v.setUint8(1, scancode); v.setUint8(2, extended ? 1 : 0); v.setUint8(3, down ? 1 : 0);
  send(b);
}

function desktopPoint(ev) {
  const r = canvas.getBoundingClientRect();
  const x = Math.round((ev.clientX - r.left) / scale);
  const y = Math.round((ev.clientY - r.top) / scale);
  return [Math.min(Math.max(x, 0), desktopW - 1), Math.min(Math.max(y, 0), desktopH - 1)];
}

function sendMove(ev) {
  const [x, y] = desktopPoint(ev);
  const [b, v] = msg(T.MOVE, 5);
  v.setUint16(1, x, true); v.setUint16(3, y, true);
  send(b);
}

function sendButton(ev, down) {
  if (ev.button > 4) return;
  const [x, y] = desktopPoint(ev);
  const [b, v] = msg(T.BUTTON, 7);
  v.setUint8(1, ev.button); v.setUint8(2, down ? 1 : 0); v.setUint16(3, x, true); v.setUint16(5, y, true);
  send(b);
}

function sendWheel(ev) {
  const [x, y] = desktopPoint(ev);
  const horizontal = Math.abs(ev.deltaX) > Math.abs(ev.deltaY);
  const raw = horizontal ? ev.deltaX : ev.deltaY;
  const lines = ev.deltaMode === 1 ? raw : raw / 40;
  // RDP: positive rotation scrolls up (away from the user); browsers use the opposite sign.
  let units = Math.round(-lines * 40);
  if (horizontal) units = -units;
  units = Math.max(-255, Math.min(255, units));
  if (units === 0) return;
  const [b, v] = msg(T.WHEEL, 8);
  v.setInt16(1, units, true); v.setUint8(3, horizontal ? 1 : 0); v.setUint16(4, x, true); v.setUint16(6, y, true);
  send(b);
}

function sendResize() {
  const [w, h] = viewport();
  const [b, v] = msg(T.RESIZE, 5);
  v.setUint16(1, w, true); v.setUint16(3, h, true);
  send(b);
}

function fitCanvas() {
  if (!desktopW) return;
  scale = Math.min(1, window.innerWidth / desktopW, window.innerHeight / desktopH);
  canvas.style.width = `${desktopW * scale}px`;
  canvas.style.height = `${desktopH * scale}px`;
}

function onMessage(ev) {
  const data = new Uint8Array(ev.data);
  const view = new DataView(ev.data);
  switch (data[0]) {
    case D.HELLO:
      break;
    case D.STATUS:
      if (!everConnected) showProgress(`stage_${data[1]}`, data[1] === 5 ? 0 : data[1]);
      break;
    case D.SIZE: {
      desktopW = view.getUint16(1, true);
      desktopH = view.getUint16(3, true);
      canvas.width = desktopW;
      canvas.height = desktopH;
      ctx.fillStyle = '#000';
      ctx.fillRect(0, 0, desktopW, desktopH);
      fitCanvas();
      // The desktop shows once its first frame is drawn: no black canvas, and no
      // keystroke before the workstation has opened the session.
      awaitingFrame = true;
      everConnected = true;
      retries = 0;
      break;
    }
    case D.TILE: {
      const x = view.getUint16(1, true), y = view.getUint16(3, true);
      const blob = new Blob([data.subarray(10)], { type: CODEC_MIME[data[9]] || 'image/png' });
      const decoded = createImageBitmap(blob);
      // Decode in parallel, draw in order.
      drawing = drawing.then(() => decoded).then((img) => { ctx.drawImage(img, x, y); img.close(); }, () => {});
      break;
    }
    case D.MOVES: {
      const moves = entries(view, 6);
      drawing = drawing.then(() => drawMoves(moves));
      break;
    }
    case D.CACHE_DRAWS: {
      const rects = entries(view, 5);
      drawing = drawing.then(() => drawKept(rects));
      break;
    }
    case D.CACHE_STORES: {
      const rects = entries(view, 5);
      drawing = drawing.then(() => keepTiles(rects));
      break;
    }
    case D.FRAME_END: {
      const seq = view.getUint32(1, true);
      drawing = drawing.then(() => {
        if (awaitingFrame) {
          awaitingFrame = false;
          $('panel').classList.add('hidden');
          $('desktop').classList.remove('hidden');
          $('desktop').classList.remove('overlay');
          canvas.focus();
        }
        if (seq <= acked) acked = 0; // the worker numbers from 1 again
        if (seq - acked >= FRAMES_IN_FLIGHT) {
          acked = seq;
          const [b, v] = msg(T.ACK, 5);
          v.setUint32(1, seq, true);
          send(b);
        }
      });
      break;
    }
    case D.POINTER: {
      const hx = view.getUint16(1, true), hy = view.getUint16(3, true);
      if (pointerUrl) URL.revokeObjectURL(pointerUrl);
      pointerUrl = URL.createObjectURL(new Blob([data.subarray(5)], { type: 'image/png' }));
      canvas.style.cursor = `url(${pointerUrl}) ${hx} ${hy}, default`;
      break;
    }
    case D.POINTER_HIDDEN: canvas.style.cursor = 'none'; break;
    case D.POINTER_DEFAULT: canvas.style.cursor = 'default'; break;
    case D.ERROR: {
      const code = view.getUint16(1, true);
      if (code === 10 && !everConnected) { ended = true; showSignIn(); break; } // no session yet
      showError(code);
      break;
    }
    case D.SOUND_SETTINGS:
      sound.settings(data[1] === 1, data[2] === 1, view.getUint32(3, true));
      break;
    case D.SPEAKER:
      sound.speaker(data[1] === 1, data.subarray(2));
      break;
    case D.SOCKET_KEY:
      socketKey = Array.from(data.subarray(1, 17), (b) => b.toString(16).padStart(2, '0')).join('');
      break;
    case D.NOTICE: {
      const seconds = view.getUint32(2, true);
      const key = { 1: 'draining', 2: 'idle_warning', 3: 'injected_slowed', 4: 'injected_recorded' }[data[1]];
      if (key) {
        $('desktop').dataset.message = t(key).replace('{seconds}', String(seconds));
        $('desktop').classList.add('overlay');
        clearTimeout(noticeTimer);
        noticeTimer = setTimeout(() => $('desktop').classList.remove('overlay'), Math.min(15, Math.max(5, seconds)) * 1000);
      }
      break;
    }
    default:
      break;
  }
}

function connect() {
  const url = `wss://${location.host}/ws`;
  ws = new WebSocket(url, socketKey ? [SUBPROTOCOL, `rebond.key.${socketKey}`] : [SUBPROTOCOL]);
  acked = 0;
  ws.binaryType = 'arraybuffer';
  ws.onmessage = onMessage;
  ws.onopen = () => { if (everConnected) sendResize(); };
  ws.onclose = () => {
    ws = null;
    if (ended) return;
    if (!everConnected && retries === 0 && !$('sign-in').classList.contains('hidden')) return;
    // The network dropped: come back to the same session, without the password.
    retries += 1;
    if (retries > 40) { showError(10); return; }
    $('desktop').dataset.message = t('reconnecting');
    $('desktop').classList.add('overlay');
    setTimeout(connect, Math.min(5000, 500 * retries));
  };
}

function onKey(ev, down) {
  if (!ws) return;
  let sc = SCANCODES[ev.code];
  let ext = false;
  if (sc === undefined) { sc = EXTENDED[ev.code]; ext = true; }
  if (sc === undefined) return;
  ev.preventDefault();
  sendKey(sc, ext, down);
}

function setUp() {
  $('sign-in').addEventListener('submit', signIn);
  $('second-factor').addEventListener('submit', submitCode);
  $('again').addEventListener('click', () => { ended = false; showSignIn(); });
  sound = new Sound({ send, t, focus: () => canvas.focus() });
  window.rebondSound = sound;
  canvas.addEventListener('keydown', (e) => { sound.resume(); onKey(e, true); });
  canvas.addEventListener('keyup', (e) => onKey(e, false));
  canvas.addEventListener('blur', () => { const [b] = msg(T.RELEASE_ALL, 1); send(b); });
  canvas.addEventListener('mousemove', (e) => {
    const now = performance.now();
    if (now - lastMove < 8) return; // at most ~120 moves per second
    lastMove = now;
    sendMove(e);
  });
  canvas.addEventListener('mousedown', (e) => { sound.resume(); canvas.focus(); e.preventDefault(); sendButton(e, true); });
  canvas.addEventListener('mouseup', (e) => { e.preventDefault(); sendButton(e, false); });
  canvas.addEventListener('contextmenu', (e) => e.preventDefault());
  canvas.addEventListener('wheel', (e) => { e.preventDefault(); sendWheel(e); }, { passive: false });
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    fitCanvas();
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(sendResize, 300);
  });
  setInterval(() => { const [b] = msg(T.KEEPALIVE, 1); send(b); }, 15000);
}

await loadTexts();
setUp();
// A page that comes back (reload, network drop) resumes its session if it has one.
showProgress('signing_in', 0);
connect();
