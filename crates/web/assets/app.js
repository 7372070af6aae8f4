// lucid glass box: the page. Plain JavaScript, no framework, no build step,
// nothing loaded from elsewhere.
//
// It talks to POST /v1/explain (streamed as NDJSON: a `start` line with the
// tokens, a `step` line per predicted token, each followed by a `lens` line
// when the lens is on, a `done` line with the whole trace), POST
// /v1/explain/semantic for the semantic view of several texts (an
// embedding model's only view, a generator's on request), GET
// /v1/explain/models for the models it can explain, and the main
// server's GET /v1/models and POST /v1/chat/completions (OpenAI SSE) for
// the chat playground, which says so when the server has none.
//
// Everything that can be large is drawn on canvas: the heatmap as one
// ImageData, the logit-lens grid only for the columns in view. Model text
// only ever reaches the page through textContent or fillText.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // State of the page, exposed for tests and curious users as `window.glass`.
  const glass = {
    models: new Map(), // name -> model summary (null when unknown)
    embedding: new Map(), // name -> how the model embeds (null when unknown)
    trace: null, // the last `done` trace
    semantic: null, // the last semantic view, as the API sent it
    wantSemantic: false, // the semantic checkbox, for generators
    tokens: [], // prompt tokens of the current run
    steps: [],
    lens: [], // lens columns as they arrive
    timings: {},
    chatAvailable: null,
  };
  window.glass = glass;

  // ---- helpers ------------------------------------------------------------

  // A token's text with its invisible parts made visible.
  const show = (t) => t.replace(/ /g, '·').replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/\r/g, '␍') || '∅';
  const pct = (p) => (p >= 0.1 ? (p * 100).toFixed(1) : (p * 100).toFixed(2)) + '%';

  function apiKey() {
    return localStorage.getItem('lucid-api-key') || '';
  }

  function headers(json) {
    const h = {};
    if (json) h['Content-Type'] = 'application/json';
    const k = apiKey();
    if (k) h['Authorization'] = 'Bearer ' + k;
    return h;
  }

  async function errorText(res) {
    try {
      const body = await res.json();
      if (body && body.error) return body.error.message || JSON.stringify(body.error);
    } catch (_) { /* not JSON */ }
    return res.status + ' ' + res.statusText;
  }

  function setStatus(text, isError) {
    const s = $('status');
    s.textContent = text;
    s.classList.toggle('error', !!isError);
  }

  // The token read at `pos`: the prompt's, then the chosen ones.
  function tokenAt(pos) {
    if (pos < glass.tokens.length) return glass.tokens[pos];
    const s = glass.steps[pos - glass.tokens.length];
    return s ? s.chosen : { id: -1, text: '' };
  }

  // The number of positions the model read: the prompt and every chosen
  // token but the last.
  function positionsRead() {
    return glass.tokens.length + Math.max(0, glass.steps.length - 1);
  }

  // ---- models -------------------------------------------------------------

  async function loadModels() {
    // The models this page can explain; the main server's list as a fallback.
    let names = [];
    try {
      const res = await fetch('/v1/explain/models', { headers: headers() });
      if (res.ok) {
        const body = await res.json();
        for (const m of body.data) {
          glass.models.set(m.id, m.explain || null);
          glass.embedding.set(m.id, m.embedding || null);
        }
        names = body.data.map((m) => m.id);
      }
    } catch (_) { /* fall back */ }
    let chatNames = [];
    try {
      const res = await fetch('/v1/models', { headers: headers() });
      if (res.ok) {
        const body = await res.json();
        chatNames = (body.data || []).map((m) => m.id);
        glass.chatAvailable = true;
      } else {
        glass.chatAvailable = res.status === 401 ? true : false;
      }
    } catch (_) {
      glass.chatAvailable = false;
    }
    if (names.length === 0) {
      for (const n of chatNames) glass.models.set(n, null);
      names = chatNames;
    }
    fillSelect($('model'), names);
    fillSelect($('chat-model'), chatNames.length ? chatNames : names);
    updateModelInfo();
    if (!glass.chatAvailable) {
      $('chat-status').textContent = 'The chat playground is not available here: this server has no /v1/chat/completions (the standalone glass-box harness serves explanations only). Run `lucid serve` for chat.';
      $('chat-send').disabled = true;
      $('chat-input').disabled = true;
    }
    if (names.length === 0) setStatus('No models are loaded.', true);
  }

  function fillSelect(select, values) {
    select.replaceChildren(...values.map((v) => {
      const o = el('option', '', v);
      o.value = v;
      return o;
    }));
  }

  function updateModelInfo() {
    const m = glass.models.get($('model').value);
    const e = glass.embedding.get($('model').value);
    const encoder = !!(m && m.role === 'encoder');
    if (encoder && e) {
      $('model-info').textContent = `${m.architecture} · embedding model · ${m.n_layers} layers · d_model ${m.d_model} · ${e.pooling} pooling${e.normalized ? ', normalized' : ''} · at most ${e.max_tokens} tokens a text`;
    } else {
      $('model-info').textContent = m
        ? `${m.architecture} · ${m.n_layers} layers · ${m.n_heads} heads · d_model ${m.d_model} · vocabulary ${m.vocab_size.toLocaleString()}`
        : '';
    }
    if (m) fillLayerHead(m);
    // An encoder predicts nothing: the semantic view is its only one.
    const box = $('semantic');
    box.checked = encoder || glass.wantSemantic;
    box.disabled = encoder;
    setView();
  }

  function semanticView() {
    return $('semantic').checked;
  }

  function setView() {
    const semantic = semanticView();
    document.body.dataset.view = semantic ? 'semantic' : 'explain';
    $('run').textContent = semantic ? 'Compare' : 'Explain';
  }

  function fillLayerHead(m) {
    const layer = $('layer');
    const head = $('head');
    const keepL = layer.value;
    const keepH = head.value;
    fillSelect(layer, [...Array(m.n_layers).keys()].map(String));
    fillSelect(head, [...Array(m.n_heads).keys()].map(String));
    layer.value = keepL !== '' && +keepL < m.n_layers ? keepL : String(Math.floor(m.n_layers / 2));
    head.value = keepH !== '' && +keepH < m.n_heads ? keepH : '0';
  }

  // ---- explain ------------------------------------------------------------

  // Attention values (heads × positions²) worth fetching in one answer: a
  // few megabytes of JSON, under the server's limit of 4M.
  const MAX_ALL_HEADS = 2 << 20;

  // Attention for one layer: every head when that stays small, so switching
  // heads needs no new request.
  function attentionRequest(summary, positions, layer, head) {
    const allHeads = summary && summary.n_heads * positions * positions <= MAX_ALL_HEADS;
    return { layers: [layer], heads: allHeads ? 'all' : [head] };
  }

  async function explain() {
    const model = $('model').value;
    const summary = glass.models.get(model);
    const t0 = performance.now();
    let renderMs = 0;
    const timed = (f) => {
      const a = performance.now();
      f();
      renderMs += performance.now() - a;
    };
    const maxTokens = Math.max(1, +$('max-tokens').value || 1);
    const layer = +$('layer').value || 0;
    const head = +$('head').value || 0;
    const prompt = $('prompt').value;
    // The tokens are not known yet: bound them by the characters (no
    // tokenizer makes more tokens than characters, bar BOS and template),
    // so that asking for every head never exceeds the server's limits.
    const estimate = prompt.length + maxTokens + ($('chat-template').checked ? 64 : 2);
    const request = {
      model,
      prompt,
      chat: $('chat-template').checked,
      max_tokens: maxTokens,
      top_k: Math.max(1, +$('top-k').value || 10),
      lens: $('lens').checked,
      temperature: Math.max(0, +$('temperature').value || 0),
      attended: 5,
      stream: true,
    };
    if (summary) request.attention = attentionRequest(summary, estimate, layer, head);
    document.body.dataset.state = 'running';
    document.body.dataset.attention = 'loading';
    $('run').disabled = true;
    setStatus('Running…');
    glass.trace = null;
    glass.steps = [];
    glass.lens = [];
    let res;
    try {
      res = await fetch('/v1/explain', { method: 'POST', headers: headers(true), body: JSON.stringify(request) });
    } catch (e) {
      return fail('Cannot reach the server: ' + e);
    }
    if (!res.ok) return fail(await errorText(res));
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    let parseMs = 0;
    let failed = false;
    const handle = (ev) => {
      if (ev.type === 'start') {
        glass.tokens = ev.tokens;
        if (ev.model) {
          glass.models.set(model, ev.model);
          if (!summary) fillLayerHead(ev.model);
        }
        timed(() => {
          renderTokens();
          $('steps').replaceChildren();
          $('completion').replaceChildren();
        });
      } else if (ev.type === 'step') {
        glass.steps.push(ev.step);
        timed(() => renderStep(ev.step, ev.index));
        setStatus(request.lens ? `Step ${ev.index + 1} of ${maxTokens}: the logit lens…` : `Step ${ev.index + 1} of ${maxTokens}…`);
      } else if (ev.type === 'lens') {
        for (const c of ev.columns) glass.lens.push(c);
      } else if (ev.type === 'done') {
        glass.trace = ev.trace;
        glass.steps = ev.trace.steps;
        timed(() => {
          renderCompletion();
          renderAttention(false);
          renderLens();
        });
        prefetchHeads();
      } else if (ev.type === 'error') {
        failed = true;
        fail(ev.error.message);
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buffered += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const lineText = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!lineText.trim()) continue;
        const a = performance.now();
        const ev = JSON.parse(lineText);
        parseMs += performance.now() - a;
        handle(ev);
      }
      if (done) break;
    }
    if (failed) return;
    if (!glass.trace) return fail('The server ended the answer early.');
    const totalMs = performance.now() - t0;
    glass.timings = {
      serverMs: glass.trace.timings.total_ms,
      forwardMs: glass.trace.timings.forward_ms,
      lensMs: glass.trace.timings.lens_ms,
      parseMs,
      renderMs,
      totalMs,
    };
    $('run').disabled = false;
    setStatus(`${glass.tokens.length} tokens, ${glass.steps.length} step${glass.steps.length === 1 ? '' : 's'}`);
    $('footer').textContent =
      `model ${glass.trace.timings.total_ms.toFixed(0)} ms (forward ${glass.trace.timings.forward_ms.toFixed(0)} ms, lens ${glass.trace.timings.lens_ms.toFixed(0)} ms) · ` +
      `page: parse ${parseMs.toFixed(0)} ms, render ${renderMs.toFixed(0)} ms · total ${totalMs.toFixed(0)} ms`;
    document.body.dataset.state = 'done';
  }

  // ---- semantic view ------------------------------------------------------

  // Decimals the page asks for and shows: every number on the page is the
  // API's, written with exactly this many places.
  const SEMANTIC_PRECISION = 4;
  const fixed = (x) => x.toFixed(SEMANTIC_PRECISION);
  const signed = (x) => (x >= 0 ? '+' : '') + fixed(x);

  async function compare() {
    const model = $('model').value;
    const texts = $('texts').value.split('\n').map((t) => t.trim()).filter((t) => t.length > 0);
    if (texts.length < 2) return fail('Give two texts or more, one per line.');
    const t0 = performance.now();
    document.body.dataset.state = 'running';
    $('run').disabled = true;
    setStatus('Comparing…');
    glass.semantic = null;
    // Every pair: the analysis is cheap and bounded, and any cell can then
    // show its tokens without asking again.
    const request = { model, texts, pairs: 'all', precision: SEMANTIC_PRECISION };
    let res;
    try {
      res = await fetch('/v1/explain/semantic', { method: 'POST', headers: headers(true), body: JSON.stringify(request) });
    } catch (e) {
      return fail('Cannot reach the server: ' + e);
    }
    if (!res.ok) return fail(await errorText(res));
    const a = performance.now();
    const view = await res.json();
    const parseMs = performance.now() - a;
    glass.semantic = view;
    const b = performance.now();
    renderSemantic(view);
    const renderMs = performance.now() - b;
    const totalMs = performance.now() - t0;
    glass.timings = { serverMs: view.timings.total_ms, forwardMs: view.timings.forward_ms, parseMs, renderMs, totalMs };
    $('run').disabled = false;
    const tokens = view.texts.reduce((n, t) => n + t.tokens.length, 0);
    setStatus(`${view.texts.length} texts, ${tokens} tokens`);
    $('footer').textContent =
      `model ${view.timings.total_ms.toFixed(0)} ms (forward ${view.timings.forward_ms.toFixed(0)} ms, analysis ${view.timings.analysis_ms.toFixed(1)} ms) · ` +
      `page: parse ${parseMs.toFixed(0)} ms, render ${renderMs.toFixed(0)} ms · total ${totalMs.toFixed(0)} ms`;
    document.body.dataset.state = 'done';
  }

  const label = (i) => '#' + i;

  function renderSemantic(view) {
    const e = view.embedding;
    $('semantic-info').textContent = `(${view.texts.length} texts · ${e.pooling} pooling${e.normalized ? ', normalized' : ''})`;
    $('pair-hint').textContent = {
      mean: "What each token adds to the pair's similarity. A text's vector is the mean of its tokens' final hidden states, so the similarity splits exactly over them: each text's numbers sum to it. Green adds, red takes away.",
      cls: "This model's vector is the first token's ([CLS]) final hidden state alone: that token holds all of the similarity, the others none.",
      last: "This model's vector is the last token's final hidden state alone: that token holds all of the similarity, the others none.",
    }[e.pooling] || '';
    renderSimilarity(view);
    renderNeighbours(view);
    const select = $('pair');
    select.replaceChildren(...view.pairs.map((p, k) => {
      const o = el('option', '', `${label(p.a)} ↔ ${label(p.b)}  ${fixed(p.similarity)}`);
      o.value = String(k);
      return o;
    }));
    selectPair(0);
  }

  // Similarity to colour: white through blue; below 0 a light red.
  function simShade(x) {
    if (x < 0) return `hsl(0, 70%, ${97 - 20 * Math.min(1, -x)}%)`;
    const t = Math.min(1, x);
    return `hsl(212, 70%, ${97 - 60 * t}%)`;
  }

  function renderSimilarity(view) {
    const n = view.texts.length;
    const grid = $('similarity');
    grid.style.gridTemplateColumns = `auto repeat(${n}, minmax(4.6em, 1fr))`;
    const frag = document.createDocumentFragment();
    frag.append(el('span', 'corner'));
    for (let j = 0; j < n; j++) {
      const c = el('span', 'col-label', label(j));
      c.title = view.texts[j].text;
      frag.append(c);
    }
    for (let i = 0; i < n; i++) {
      const rowLabel = el('span', 'row-label');
      rowLabel.append(el('b', '', label(i)), view.texts[i].text);
      rowLabel.title = `${view.texts[i].text}\n${view.texts[i].tokens.length} tokens · norm ${view.texts[i].norm}`;
      frag.append(rowLabel);
      for (let j = 0; j < n; j++) {
        const x = view.similarity[i][j];
        const cell = el('span', 'sim-cell' + (i === j ? ' diag' : ''), fixed(x));
        cell.dataset.i = i;
        cell.dataset.j = j;
        cell.style.background = simShade(x);
        cell.style.color = x > 0.6 ? '#fff' : '#1b1f24';
        cell.title = `${label(i)} ${JSON.stringify(view.texts[i].text)}\n${label(j)} ${JSON.stringify(view.texts[j].text)}\nsimilarity ${fixed(x)}`;
        frag.append(cell);
      }
    }
    grid.replaceChildren(frag);
    grid.dataset.texts = n;
    grid.dataset.cells = n * n;
  }

  function renderNeighbours(view) {
    const list = $('neighbours');
    list.replaceChildren(...view.texts.map((t, i) => {
      const li = el('li');
      li.dataset.i = i;
      li.append(el('span', 'who', label(i)), '→');
      t.neighbours.slice(0, 3).forEach((nb, k) => {
        const span = el('span', 'nb' + (k === 0 ? ' nb-first' : ''), `${label(nb.index)} ${fixed(nb.similarity)}`);
        span.dataset.index = nb.index;
        span.title = view.texts[nb.index].text;
        li.append(span);
      });
      return li;
    }));
  }

  // Shows the `k`th pair of the view: its cell outlined, its tokens coloured.
  function selectPair(k) {
    const view = glass.semantic;
    const p = view && view.pairs[k];
    for (const c of document.querySelectorAll('#similarity .sim-cell.selected')) c.classList.remove('selected');
    if (!p) {
      $('strip').replaceChildren();
      $('pair-info').textContent = '';
      return;
    }
    $('pair').value = String(k);
    for (const [i, j] of [[p.a, p.b], [p.b, p.a]]) {
      const cell = document.querySelector(`#similarity .sim-cell[data-i="${i}"][data-j="${j}"]`);
      if (cell) cell.classList.add('selected');
    }
    $('pair-info').textContent = `similarity ${fixed(p.similarity)}`;
    renderStrip(view, p);
  }

  function contribShade(share) {
    const t = Math.min(1, Math.abs(share));
    return share < 0 ? `hsl(0, 75%, ${97 - 37 * t}%)` : `hsl(140, 55%, ${97 - 50 * t}%)`;
  }

  function renderStrip(view, p) {
    const all = p.a_contributions.concat(p.b_contributions);
    const max = Math.max(1e-12, ...all.map(Math.abs));
    const rows = [[p.a, p.a_contributions], [p.b, p.b_contributions]].map(([index, cs], side) => {
      const text = view.texts[index];
      const row = el('div', 'strip-row');
      row.dataset.text = index;
      row.dataset.side = side === 0 ? 'a' : 'b';
      const head = el('div', 'strip-head');
      head.append(el('b', '', label(index)), text.text);
      const tokens = el('div', 'strip-tokens');
      text.tokens.forEach((t, pos) => {
        const c = cs[pos];
        const chip = el('span', 'ctok');
        chip.dataset.pos = pos;
        chip.style.background = contribShade(c / max);
        chip.title = `${JSON.stringify(t.text)} · id ${t.id} · adds ${signed(c)} of ${fixed(p.similarity)}`;
        chip.append(el('span', 't', show(t.text)), el('span', 'c', signed(c)));
        tokens.append(chip);
      });
      row.append(head, tokens);
      return row;
    });
    $('strip').replaceChildren(...rows);
  }

  function similarityClick(ev) {
    const cell = ev.target.closest('.sim-cell');
    const view = glass.semantic;
    if (!cell || !view) return;
    const i = +cell.dataset.i;
    const j = +cell.dataset.j;
    if (i === j) return;
    const k = view.pairs.findIndex((p) => (p.a === i && p.b === j) || (p.a === j && p.b === i));
    if (k >= 0) selectPair(k);
  }

  function fail(message) {
    setStatus(message, true);
    $('run').disabled = false;
    document.body.dataset.state = 'error';
  }

  // ---- tokens and steps ---------------------------------------------------

  function renderTokens() {
    $('token-count').textContent = `(${glass.tokens.length})`;
    const frag = document.createDocumentFragment();
    glass.tokens.forEach((t, i) => {
      const chip = el('span', 'token');
      chip.title = `position ${i} · id ${t.id}`;
      chip.dataset.pos = i;
      chip.append(el('span', 't', show(t.text)), el('span', 'id', String(t.id)));
      frag.append(chip);
    });
    $('tokens').replaceChildren(frag);
  }

  // One probability bar: rank, token, bar, percentage (`suffix` follows the
  // token, e.g. its position).
  function barRow(rank, text, prob, chosen, suffix = '') {
    const row = el('div', 'bar-row' + (chosen ? ' chosen' : ''));
    const bar = el('div', 'bar');
    const fill = el('div', 'fill');
    fill.style.width = Math.max(0.5, prob * 100).toFixed(2) + '%';
    bar.append(fill);
    row.append(el('span', 'rank', String(rank)), el('span', 'label', show(text) + suffix), bar, el('span', 'pct', pct(prob)));
    row.title = `${JSON.stringify(text)} · ${pct(prob)}`;
    return row;
  }

  function renderStep(step, index) {
    const card = el('div', 'step');
    card.dataset.index = index;
    const head = el('div', 'step-head');
    const after = tokenAt(step.position);
    head.append(
      `${index + 1}. after `,
      el('span', 'tok', show(after.text)),
      ` → `,
      el('span', 'tok chosen', show(step.chosen.text)),
      ` ${pct(step.chosen.prob)} · rank ${step.chosen.rank} · entropy ${step.entropy.toFixed(2)} nats`,
    );
    const bars = el('div', 'bars');
    step.top.forEach((t, i) => bars.append(barRow(i + 1, t.text, t.prob, t.id === step.chosen.id)));
    card.append(head, bars);
    if (step.attended && step.attended.length) {
      const list = el('div', 'attended-list', 'looked at most: ');
      step.attended.forEach((a, i) => {
        if (i) list.append(', ');
        list.append(el('span', 'tok', show(a.text)), ` ${(a.weight * 100).toFixed(0)}%`);
      });
      card.append(list);
    }
    $('steps').append(card);
  }

  function renderCompletion() {
    const c = $('completion');
    const prompt = el('span', '', glass.tokens.map((t) => t.text).join(''));
    c.replaceChildren(prompt, el('span', 'gen', glass.trace.completion));
  }

  // ---- attention ----------------------------------------------------------

  function currentMap() {
    if (!glass.trace) return null;
    const layer = +$('layer').value;
    const head = +$('head').value;
    return glass.trace.attention.find((m) => m.layer === layer && m.head === head) || null;
  }

  // With only the selected head in hand (the prompt looked long before it
  // was tokenized), fetches the layer's other heads now that the positions
  // are known, so switching heads is instant.
  function prefetchHeads() {
    const summary = glass.models.get($('model').value);
    const layer = +$('layer').value;
    const n = positionsRead();
    const have = glass.trace.attention.filter((m) => m.layer === layer).length;
    if (summary && have < summary.n_heads && summary.n_heads * n * n <= MAX_ALL_HEADS) fetchAttention();
  }

  // Fetches the selected layer's maps for exactly the positions shown.
  async function fetchAttention() {
    const trace = glass.trace;
    if (!trace) return;
    const layer = +$('layer').value;
    const head = +$('head').value;
    const n = positionsRead();
    const ids = [];
    for (let p = 0; p < n; p++) ids.push(tokenAt(p).id);
    $('attention-status').textContent = 'Loading…';
    document.body.dataset.attention = 'loading';
    const model = $('model').value;
    const body = {
      model,
      tokens: ids,
      max_tokens: 1,
      top_k: 1,
      attended: 0,
      attention: attentionRequest(glass.models.get(model), n, layer, head),
    };
    try {
      const res = await fetch('/v1/explain', { method: 'POST', headers: headers(true), body: JSON.stringify(body) });
      if (!res.ok) throw new Error(await errorText(res));
      const got = await res.json();
      if (glass.trace !== trace) return; // a newer run replaced it
      trace.attention = got.attention || [];
      $('attention-status').textContent = '';
    } catch (e) {
      $('attention-status').textContent = String(e.message || e);
    }
    renderAttention(false);
  }

  // Draws the selected layer and head, fetching them first when the trace
  // does not have them (and `allowFetch` allows it).
  function renderAttention(allowFetch = true) {
    const map = currentMap();
    if (!map) {
      if (allowFetch && glass.trace) fetchAttention();
      else document.body.dataset.attention = 'ready';
      return;
    }
    const a = performance.now();
    drawHeatmap(map);
    renderAttended(map);
    glass.timings.heatmapMs = performance.now() - a;
    document.body.dataset.attention = 'ready';
  }

  // Weight to colour: white through blue to near black, on a square-root
  // scale so that small but real attention shows.
  function shade(w) {
    const t = Math.sqrt(Math.min(1, Math.max(0, w)));
    return [255 - 230 * t, 255 - 190 * t, 255 - 100 * t];
  }

  function drawHeatmap(map) {
    const canvas = $('heatmap');
    const n = map.queries;
    const k = map.keys;
    const cell = Math.max(2, Math.min(36, Math.floor(560 / Math.max(n, 1))));
    const labels = n <= 48;
    const left = labels ? 90 : 0;
    const top = labels ? 70 : 0;
    const dpr = window.devicePixelRatio || 1;
    const w = left + k * cell;
    const h = top + n * cell;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = w + 'px';
    canvas.style.height = h + 'px';
    const ctx = canvas.getContext('2d');
    // The cells, one pixel each, scaled up without smoothing.
    const img = ctx.createImageData(k, n);
    const px = img.data;
    for (let i = 0; i < n * k; i++) {
      const [r, g, b] = shade(map.weights[i]);
      px[4 * i] = r;
      px[4 * i + 1] = g;
      px[4 * i + 2] = b;
      px[4 * i + 3] = 255;
    }
    const off = document.createElement('canvas');
    off.width = k;
    off.height = n;
    off.getContext('2d').putImageData(img, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, left, top, k * cell, n * cell);
    if (labels) {
      ctx.fillStyle = '#1b1f24';
      ctx.font = '11px ui-monospace, monospace';
      ctx.textBaseline = 'middle';
      ctx.textAlign = 'right';
      for (let q = 0; q < n; q++) ctx.fillText(clip(show(tokenAt(q).text), 12), left - 4, top + q * cell + cell / 2);
      ctx.save();
      ctx.textAlign = 'left';
      for (let j = 0; j < k; j++) {
        ctx.save();
        ctx.translate(left + j * cell + cell / 2, top - 4);
        ctx.rotate(-Math.PI / 3);
        ctx.fillText(clip(show(tokenAt(j).text), 10), 0, 0);
        ctx.restore();
      }
      ctx.restore();
    }
    canvas.dataset.queries = n;
    canvas.dataset.keys = k;
    canvas.dataset.cells = n * k;
    canvas.dataset.layer = map.layer;
    canvas.dataset.head = map.head;
    canvas._geometry = { left, top, cell, n, k, map };
  }

  function clip(s, n) {
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }

  function renderAttended(map) {
    const n = map.queries;
    const row = map.weights.slice((n - 1) * map.keys, n * map.keys);
    const order = [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, 12);
    const box = $('attended');
    box.replaceChildren(...order.map((p, i) => barRow(i + 1, tokenAt(p).text, row[p], false, ` @${p}`)));
    box.dataset.position = n - 1;
  }

  function heatmapHover(ev) {
    const g = $('heatmap')._geometry;
    if (!g) return;
    const r = ev.target.getBoundingClientRect();
    const x = ev.clientX - r.left - g.left;
    const y = ev.clientY - r.top - g.top;
    const q = Math.floor(y / g.cell);
    const k = Math.floor(x / g.cell);
    if (x < 0 || y < 0 || q >= g.n || k >= g.k) return hideTip();
    const w = g.map.weights[q * g.k + k];
    showTip(ev, `${q} ${JSON.stringify(tokenAt(q).text)}\n  → ${k} ${JSON.stringify(tokenAt(k).text)}\nweight ${w.toFixed(4)}`);
  }

  // ---- logit lens ---------------------------------------------------------

  const LENS = { cellW: 78, cellH: 30, labelW: 92, headerH: 34 };

  function renderLens() {
    const lens = glass.trace && glass.trace.lens;
    const spacer = $('lens-spacer');
    const canvas = $('lens-grid');
    if (!lens) {
      spacer.style.width = '0px';
      spacer.style.height = '0px';
      canvas.width = 0;
      canvas.height = 0;
      canvas.dataset.cells = 0;
      $('lens-section').hidden = true;
      return;
    }
    $('lens-section').hidden = false;
    const cols = lens.positions.length;
    const rows = lens.layers.length;
    spacer.style.width = LENS.labelW + cols * LENS.cellW + 'px';
    spacer.style.height = LENS.headerH + rows * LENS.cellH + 'px';
    canvas.dataset.rows = rows;
    canvas.dataset.cols = cols;
    canvas.dataset.cells = rows * cols;
    drawLens();
  }

  // Draws the columns in view only: a 200-position grid costs what a
  // 15-position one does.
  function drawLens() {
    const lens = glass.trace && glass.trace.lens;
    if (!lens) return;
    const a = performance.now();
    const scroll = $('lens-scroll');
    const canvas = $('lens-grid');
    const rows = lens.layers.length;
    const cols = lens.positions.length;
    const viewW = Math.min(scroll.clientWidth, LENS.labelW + cols * LENS.cellW);
    const h = LENS.headerH + rows * LENS.cellH;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(viewW * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(viewW * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.width = viewW + 'px';
      canvas.style.height = h + 'px';
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, viewW, h);
    const sx = scroll.scrollLeft;
    const first = Math.max(0, Math.floor(sx / LENS.cellW));
    const last = Math.min(cols, Math.ceil((sx + viewW - LENS.labelW) / LENS.cellW) + 1);
    ctx.textBaseline = 'middle';
    for (let c = first; c < last; c++) {
      const col = lens.positions[c];
      const x = LENS.labelW + c * LENS.cellW - sx;
      if (x + LENS.cellW < LENS.labelW) continue;
      const next = tokenAt(col.position + 1);
      // Header: the position's token.
      ctx.fillStyle = '#1b1f24';
      ctx.font = '11px ui-monospace, monospace';
      ctx.textAlign = 'center';
      ctx.fillText(clip(show(tokenAt(col.position).text), 10), x + LENS.cellW / 2, 12);
      ctx.fillStyle = '#667085';
      ctx.font = '9px ui-monospace, monospace';
      ctx.fillText(String(col.position), x + LENS.cellW / 2, 26);
      for (let r = 0; r < rows; r++) {
        // The last layer on top.
        const y = LENS.headerH + (rows - 1 - r) * LENS.cellH;
        const best = col.layers[r] && col.layers[r][0];
        if (!best) continue;
        const t = Math.sqrt(best.prob);
        const light = 97 - 62 * t;
        ctx.fillStyle = `hsl(212, 70%, ${light}%)`;
        ctx.fillRect(x + 1, y + 1, LENS.cellW - 2, LENS.cellH - 2);
        if (best.id === next.id) {
          ctx.strokeStyle = '#0b7a3b';
          ctx.lineWidth = 2;
          ctx.strokeRect(x + 2, y + 2, LENS.cellW - 4, LENS.cellH - 4);
        }
        ctx.fillStyle = light < 60 ? '#fff' : '#1b1f24';
        ctx.font = '11px ui-monospace, monospace';
        ctx.fillText(clip(show(best.text), 10), x + LENS.cellW / 2, y + 11);
        ctx.font = '9px ui-monospace, monospace';
        ctx.fillText((best.prob * 100).toFixed(best.prob >= 0.1 ? 0 : 1) + '%', x + LENS.cellW / 2, y + 23);
      }
    }
    // Row labels, drawn last so columns scroll under them.
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, LENS.labelW, h);
    ctx.fillStyle = '#1b1f24';
    ctx.font = '11px ui-monospace, monospace';
    ctx.textAlign = 'right';
    for (let r = 0; r < rows; r++) {
      const y = LENS.headerH + (rows - 1 - r) * LENS.cellH + LENS.cellH / 2;
      const name = lens.layers[r];
      const m = /^blocks\.(\d+)\./.exec(name);
      ctx.fillText(m ? `layer ${m[1]}` : name, LENS.labelW - 8, y);
    }
    glass.timings.lensDrawMs = performance.now() - a;
  }

  function lensHover(ev) {
    const lens = glass.trace && glass.trace.lens;
    if (!lens) return;
    const r = ev.target.getBoundingClientRect();
    const x = ev.clientX - r.left;
    const y = ev.clientY - r.top;
    if (x < LENS.labelW || y < LENS.headerH) return hideTip();
    const c = Math.floor((x - LENS.labelW + $('lens-scroll').scrollLeft) / LENS.cellW);
    const row = lens.layers.length - 1 - Math.floor((y - LENS.headerH) / LENS.cellH);
    const col = lens.positions[c];
    if (!col || !col.layers[row]) return hideTip();
    const lines = col.layers[row].map((t) => `${pct(t.prob).padStart(7)}  ${JSON.stringify(t.text)}`);
    showTip(ev, `${lens.layers[row]} @ ${col.position} ${JSON.stringify(tokenAt(col.position).text)}\n${lines.join('\n')}`);
  }

  // ---- tooltip ------------------------------------------------------------

  function showTip(ev, text) {
    const tip = $('tooltip');
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 300) + 'px';
    tip.style.top = ev.clientY + 14 + 'px';
  }

  function hideTip() {
    $('tooltip').hidden = true;
  }

  // ---- chat playground ----------------------------------------------------

  const chat = { messages: [] };

  async function sendChat(ev) {
    ev.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text) return;
    $('chat-input').value = '';
    chat.messages.push({ role: 'user', content: text });
    $('chat-log').append(el('div', 'msg user', text));
    const out = el('div', 'msg assistant', '');
    $('chat-log').append(out);
    $('chat-send').disabled = true;
    $('chat-status').textContent = '';
    let answer = '';
    try {
      const res = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: headers(true),
        body: JSON.stringify({ model: $('chat-model').value, messages: chat.messages, stream: true }),
      });
      if (res.status === 404 || res.status === 405) throw new Error('The chat playground is not available here: this server has no /v1/chat/completions.');
      if (!res.ok) throw new Error(await errorText(res));
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffered = '';
      let finished = false;
      while (!finished) {
        const { value, done } = await reader.read();
        if (value) buffered += decoder.decode(value, { stream: true });
        let sep;
        // Server-sent events end with a blank line.
        while ((sep = buffered.search(/\r?\n\r?\n/)) >= 0) {
          const event = buffered.slice(0, sep);
          buffered = buffered.slice(sep).replace(/^\r?\n\r?\n/, '');
          for (const line of event.split(/\r?\n/)) {
            if (!line.startsWith('data:')) continue;
            const data = line.slice(5).trim();
            if (data === '[DONE]') {
              finished = true;
              break;
            }
            const chunk = JSON.parse(data);
            if (chunk.error) throw new Error(chunk.error.message || 'error');
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) {
              answer += delta.content;
              out.textContent = answer;
              $('chat-log').scrollTop = $('chat-log').scrollHeight;
            }
          }
        }
        if (done) break;
      }
      chat.messages.push({ role: 'assistant', content: answer });
    } catch (e) {
      out.remove();
      chat.messages.pop();
      $('chat-status').textContent = String(e.message || e);
    }
    $('chat-send').disabled = false;
  }

  // ---- wiring -------------------------------------------------------------

  function init() {
    const key = $('api-key');
    key.value = apiKey();
    key.addEventListener('change', () => {
      localStorage.setItem('lucid-api-key', key.value);
      loadModels();
    });
    $('model').addEventListener('change', updateModelInfo);
    $('semantic').addEventListener('change', () => {
      glass.wantSemantic = $('semantic').checked;
      setView();
    });
    $('run').addEventListener('click', () => (semanticView() ? compare() : explain()).catch((e) => fail(String(e))));
    $('texts').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('run').click();
    });
    $('similarity').addEventListener('click', similarityClick);
    $('pair').addEventListener('change', () => selectPair(+$('pair').value));
    $('prompt').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('run').click();
    });
    $('layer').addEventListener('change', () => renderAttention());
    $('head').addEventListener('change', () => renderAttention());
    const heat = $('heatmap');
    heat.addEventListener('mousemove', heatmapHover);
    heat.addEventListener('mouseleave', hideTip);
    const grid = $('lens-grid');
    grid.addEventListener('mousemove', lensHover);
    grid.addEventListener('mouseleave', hideTip);
    let pending = false;
    $('lens-scroll').addEventListener('scroll', () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        drawLens();
      });
    });
    window.addEventListener('resize', () => drawLens());
    $('chat-form').addEventListener('submit', sendChat);
    loadModels().then(() => {
      document.body.dataset.state = 'ready';
    });
  }

  init();
})();
