// The vncedge demo viewer: noVNC's RFB on the VNC channel and the JSON
// message channel (take/hand back control, clipboard), both opened to the
// vncedge listener with the same client_id so vncedge pairs them.
//
// Query parameters: port (vncedge listener port), ws (WebSocket origin, e.g.
// wss://edge.example.com), client_id; kind and id (the platform session,
// e.g. kind=browser_session&id=pbs_demo), apikey or token (the viewer's
// credential), so the page can drive a --sessions or signed-token vncedge too. State for tests and curious people is
// in window.demo and on <html data-vnc=… data-messages=… data-interactor=…>.

const $ = (id) => document.getElementById(id);
const root = document.documentElement;
const params = new URLSearchParams(location.search);
const state = { rfb: null, messages: null, interactor: '', clientId: '', clipboard: false, log: [] };
window.demo = state;

function log(line) {
  const t = new Date().toISOString().slice(11, 23);
  state.log.push(line);
  const el = $('log');
  el.textContent += `${t} ${line}\n`;
  el.scrollTop = el.scrollHeight;
}

function problem(text) {
  const el = $('problem');
  el.textContent = text;
  el.classList.add('shown');
}

function pill(id, text, ok) {
  const el = $(id);
  el.textContent = text;
  if (ok === undefined) delete el.dataset.ok; else el.dataset.ok = String(ok);
}

function randomId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function setInteractor(who) {
  state.interactor = who;
  root.dataset.interactor = who;
  const mine = who === 'user';
  pill('interactor', mine ? 'control: you' : `control: ${who}`, mine);
  const btn = $('control');
  btn.dataset.interactor = who;
  btn.textContent = mine ? 'Hand back' : 'Take control';
}

function send(msg) {
  const ws = state.messages;
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    log(`not sent (message channel closed): ${msg.kind}`);
    return false;
  }
  ws.send(JSON.stringify(msg));
  return true;
}

// readClipboard returns the browser clipboard when the page may read it,
// else the textarea's text.
async function readClipboard() {
  try {
    if (navigator.clipboard && navigator.clipboard.readText) {
      const text = await navigator.clipboard.readText();
      if (text) return text;
    }
  } catch (e) {
    log(`clipboard not readable (${e.name}); using the text box`);
  }
  return $('clip').value;
}

async function writeClipboard(text) {
  $('clip').value = text;
  try {
    if (navigator.clipboard && navigator.clipboard.writeText) await navigator.clipboard.writeText(text);
  } catch (e) {
    log(`clipboard not writable (${e.name}); the text is in the text box`);
  }
}

function openMessages(url) {
  const ws = new WebSocket(url);
  state.messages = ws;
  ws.addEventListener('open', () => {
    root.dataset.messages = 'open';
    pill('msg-state', 'messages: open', true);
    $('control').disabled = false;
    $('copy').disabled = !state.clipboard;
    $('paste').disabled = !state.clipboard;
  });
  ws.addEventListener('close', (e) => {
    root.dataset.messages = 'closed';
    pill('msg-state', `messages: closed (${e.code}${e.reason ? ' ' + e.reason : ''})`, false);
    $('control').disabled = true;
    $('copy').disabled = true;
    $('paste').disabled = true;
  });
  ws.addEventListener('message', async (e) => {
    let msg;
    try { msg = JSON.parse(e.data); } catch { log(`bad message: ${e.data}`); return; }
    switch (msg.kind) {
      case 'interactor':
        setInteractor(msg.interactor);
        log(`interactor: ${msg.interactor}`);
        break;
      case 'copied-text':
        await writeClipboard(msg.text || '');
        log(`copied-text: ${JSON.stringify((msg.text || '').slice(0, 80))}`);
        break;
      case 'ask-for-clipboard': {
        const text = await readClipboard();
        send({ kind: 'ask-for-clipboard-response', text });
        log(`ask-for-clipboard: answered with ${text.length} characters`);
        break;
      }
      case 'error':
        log(`error${msg.failed_kind ? ' (' + msg.failed_kind + ')' : ''}: ${msg.message}`);
        break;
      default:
        log(`message: ${e.data}`);
    }
  });
}

async function main() {
  let cfg;
  try {
    const r = await fetch('config.json', { cache: 'no-store' });
    cfg = await r.json();
  } catch (e) {
    problem(`Could not load config.json from the admin server: ${e}`);
    return;
  }
  if (!cfg.novnc) {
    problem(cfg.hint || 'noVNC is not installed.');
    pill('vnc-state', 'VNC: noVNC missing', false);
    return;
  }
  let RFB;
  try {
    ({ default: RFB } = await import('./novnc/core/rfb.js'));
  } catch (e) {
    problem(`Could not load noVNC from ./novnc/core/rfb.js: ${e}`);
    pill('vnc-state', 'VNC: noVNC missing', false);
    return;
  }
  const port = params.get('port') || cfg.port;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const base = params.get('ws') || cfg.ws_base || `${scheme}//${location.hostname}:${port}`;
  state.clientId = params.get('client_id') || randomId();
  const query = new URLSearchParams({ client_id: state.clientId });
  for (const k of ['apikey', 'token']) if (params.get(k)) query.set(k, params.get(k));
  const q = `?${query}`;
  let vncPath = cfg.vnc_path, messagesPath = cfg.messages_path;
  if (params.get('kind') && params.get('id')) {
    const kind = encodeURIComponent(params.get('kind')), id = encodeURIComponent(params.get('id'));
    vncPath = `/v1/stream/vnc/${kind}/${id}`;
    messagesPath = `/v1/stream/messages/${kind}/${id}`;
  }
  // Copy and Paste need a DevTools endpoint behind the session: the demo
  // knows (--cdp-url); for another edge (ws=…) the page cannot tell and tries.
  state.clipboard = cfg.clipboard || !!params.get('ws');
  if (!state.clipboard) {
    for (const id of ['copy', 'paste']) $(id).title = cfg.clipboard_hint;
    $('clip').placeholder = cfg.clipboard_hint;
    log(`clipboard off: ${cfg.clipboard_hint}`);
  }

  openMessages(base + messagesPath + q);

  // No viewOnly while the agent has control: vncedge is what drops input.
  const rfb = new RFB($('screen'), base + vncPath + q);
  state.rfb = rfb;
  rfb.scaleViewport = false;
  rfb.resizeSession = false;
  rfb.addEventListener('connect', () => {
    root.dataset.vnc = 'connected';
    pill('vnc-state', 'VNC: connected', true);
    log('VNC connected');
    rfb.focus({ preventScroll: true });
  });
  rfb.addEventListener('disconnect', (e) => {
    root.dataset.vnc = 'disconnected';
    pill('vnc-state', e.detail.clean ? 'VNC: disconnected' : 'VNC: connection lost', false);
    log(`VNC disconnected (clean: ${e.detail.clean})`);
  });
  rfb.addEventListener('securityfailure', (e) => log(`security failure: ${e.detail.reason || e.detail.status}`));
  rfb.addEventListener('clipboard', (e) => log(`remote clipboard: ${JSON.stringify(e.detail.text.slice(0, 80))}`));
  rfb.addEventListener('desktopname', (e) => { document.title = `${e.detail.name} - vncedge`; });

  $('control').addEventListener('click', () => {
    send({ kind: state.interactor === 'user' ? 'cede-control' : 'take-control' });
    rfb.focus({ preventScroll: true });
  });
  $('copy').addEventListener('click', () => send({ kind: 'clipboard-copy' }));
  $('paste').addEventListener('click', async () => {
    const text = await readClipboard();
    // The remote browser (over CDP) and the VNC server's own clipboard.
    send({ kind: 'clipboard-paste', text });
    rfb.clipboardPasteFrom(text);
    log(`pasted ${text.length} characters`);
  });
}

main().catch((e) => problem(`The viewer failed: ${e && e.stack || e}`));
