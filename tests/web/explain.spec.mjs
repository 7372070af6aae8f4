// The glass-box page in a real headless Chromium (Debian's, never a
// downloaded one), against the lucid-glass-web harness serving SmolLM2,
// Gemma 3 and all-MiniLM-L6-v2. Run through tests/web/run.sh, which starts
// the harness and sets:
//
//   GLASS_URL        the harness's base URL
//   SCREENSHOTS      where screenshots and timings.json go (an artifact)
//   DOC_SCREENSHOT   optional: also write the README's screenshot there
//
// For each model it explains a prompt and checks the counts of what the
// page drew against the API's own answer: one chip per prompt token, one
// probability bar per top-k candidate, queries × keys heatmap cells for the
// chosen head, (layers + 1) × positions logit-lens cells. It then explains
// a 200-token prompt with the lens on and measures what the page costs:
// parsing, rendering, redrawing the heatmap for another head, scrolling the
// lens grid, and the longest main-thread task. Then it compares three
// sentences with the embedding model (the semantic view) and checks that
// every number the page shows (the similarity grid, the nearest
// neighbours, the token contributions of the selected pair) is the API's.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.GLASS_URL;
const shots = process.env.SCREENSHOTS;
const docShot = process.env.DOC_SCREENSHOT || '';
if (!base || !shots) {
  console.error('explain.spec.mjs: set GLASS_URL and SCREENSHOTS (run tests/web/run.sh)');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const failures = [];
function check(cond, message) {
  if (!cond) {
    failures.push(message);
    console.error('FAIL: ' + message);
  } else {
    console.log('ok: ' + message);
  }
}

// What the API says, for the counts the page must match.
async function api(body) {
  const res = await fetch(base + '/v1/explain', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST /v1/explain: ${res.status} ${await res.text()}`);
  return res.json();
}

async function apiSemantic(body) {
  const res = await fetch(base + '/v1/explain/semantic', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST /v1/explain/semantic: ${res.status} ${await res.text()}`);
  return res.json();
}

async function models() {
  const res = await fetch(base + '/v1/explain/models');
  const body = await res.json();
  return new Map(body.data.map((m) => [m.id, m.explain]));
}

const userDataDir = mkdtempSync(join(tmpdir(), 'lucid-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1360, height: 900 },
});
const timings = {};
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(90_000);
  page.on('pageerror', (e) => check(false, 'no page error: ' + e.message));
  page.on('console', (m) => {
    // The harness has no /v1/models or chat: the page expects those 404s.
    const url = (m.location() && m.location().url) || '';
    if (m.type() === 'error' && !/\/v1\/(models|chat\/completions)$/.test(url)) {
      check(false, `no console error: ${m.text()} (${url})`);
    }
  });
  // Offline: the page must not reach anything but the server it came from.
  page.on('request', (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith('data:')) check(false, 'request stays on the server: ' + r.url());
  });

  await page.goto(base + '/');
  await page.waitForSelector('body[data-state="ready"]');
  const known = await models();
  const options = await page.$$eval('#model option', (os) => os.map((o) => o.value));
  check(options.includes('smollm2') && options.includes('gemma3'), `model picker lists smollm2 and gemma3 (${options})`);
  const chatStatus = await page.textContent('#chat-status');
  check(/not available/.test(chatStatus), 'chat playground says it is not available in the harness');

  // Longest main-thread task from here on.
  await page.evaluate(() => {
    window.__longest = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
    }).observe({ type: 'longtask', buffered: false });
  });

  async function explainOn(model, prompt, { topK = 10, maxTokens = 1, lens = true } = {}) {
    await page.selectOption('#model', model);
    await page.fill('#prompt', prompt);
    await page.fill('#top-k', String(topK));
    await page.fill('#max-tokens', String(maxTokens));
    await page.setChecked('#lens', lens);
    const t0 = Date.now();
    await page.click('#run');
    await page.waitForSelector('body[data-state="done"], body[data-state="error"]');
    const state = await page.getAttribute('body', 'data-state');
    if (state !== 'done') throw new Error(`${model}: the page says ${await page.textContent('#status')}`);
    await page.waitForSelector('body[data-attention="ready"]');
    return Date.now() - t0;
  }

  async function checkCounts(model, prompt, topK) {
    const summary = known.get(model);
    const reference = await api({ model, prompt, top_k: topK, attended: 0 });
    const n = reference.tokens.length;
    const wall = await explainOn(model, prompt, { topK });
    const chips = await page.$$eval('#tokens .token', (e) => e.length);
    check(chips === n, `${model}: ${chips} token chips for ${n} prompt tokens`);
    const ids = await page.$$eval('#tokens .token .id', (e) => e.map((x) => +x.textContent));
    check(JSON.stringify(ids) === JSON.stringify(reference.tokens.map((t) => t.id)), `${model}: chip ids are the prompt's token ids`);
    const bars = await page.$$eval('#steps .step:first-child .bar-row', (e) => e.length);
    check(bars === topK, `${model}: ${bars} probability bars for top-k ${topK}`);
    const first = await page.textContent('#steps .step:first-child .bar-row .label');
    check(first === reference.steps[0].top[0].text.replace(/ /g, '·'), `${model}: first bar is the API's top token (${first})`);
    const heat = await page.$eval('#heatmap', (c) => ({ ...c.dataset }));
    check(+heat.cells === n * n && +heat.queries === n && +heat.keys === n, `${model}: heatmap has ${heat.cells} cells for ${n}×${n}`);
    // The diagonal's first cell is attended fully: it must be drawn dark.
    const dark = await page.$eval('#heatmap', (c) => {
      const g = c._geometry;
      const dpr = window.devicePixelRatio || 1;
      const px = c.getContext('2d').getImageData(Math.floor((g.left + g.cell / 2) * dpr), Math.floor((g.top + g.cell / 2) * dpr), 1, 1).data;
      return px[0] < 100;
    });
    check(dark, `${model}: the heatmap is drawn (position 0 attends to itself)`);
    const lens = await page.$eval('#lens-grid', (c) => ({ ...c.dataset }));
    check(+lens.cells === (summary.n_layers + 1) * n, `${model}: lens grid has ${lens.cells} cells for ${summary.n_layers + 1} layers × ${n} positions`);
    // Another head of the same layer is already there; another layer is fetched.
    await page.selectOption('#head', String(summary.n_heads - 1));
    const head = await page.$eval('#heatmap', (c) => +c.dataset.head);
    check(head === summary.n_heads - 1, `${model}: head selector redraws the heatmap`);
    await page.selectOption('#layer', '0');
    await page.waitForFunction(() => document.querySelector('#heatmap').dataset.layer === '0');
    const cells = await page.$eval('#heatmap', (c) => +c.dataset.cells);
    check(cells === n * n, `${model}: layer 0's heatmap has ${cells} cells`);
    timings[model] = { prompt_tokens: n, wall_ms: wall, page: await page.evaluate(() => window.glass.timings) };
    return n;
  }

  await checkCounts('smollm2', 'The capital of France is', 10);
  await page.screenshot({ path: join(shots, 'smollm2.png'), fullPage: true });
  if (docShot) {
    // The README's picture: three steps, a middle layer's head, the lens.
    await page.selectOption('#layer', '14');
    await page.selectOption('#head', '3');
    await explainOn('smollm2', 'The capital of France is', { topK: 8, maxTokens: 3 });
    const bottom = await page.$eval('#lens-section', (e) => e.getBoundingClientRect().bottom + window.scrollY);
    await page.screenshot({ path: docShot, fullPage: true, clip: { x: 0, y: 0, width: 1360, height: Math.ceil(bottom) + 12 } });
  }
  await checkCounts('gemma3', 'The capital of France is', 8);
  await page.screenshot({ path: join(shots, 'gemma3.png'), fullPage: true });

  // A 200-token prompt (on SmolLM2's tokenizer) with the lens on.
  const sentence = 'The glass box lets people see what a transformer does with their prompt: which tokens it reads, where each head looks, and how the prediction forms layer by layer.';
  const long = Array(6).fill(sentence).join(' ') + ' It is';
  await page.evaluate(() => {
    window.__longest = 0;
  });
  const wall = await explainOn('smollm2', long, { topK: 10 });
  const n = await page.$$eval('#tokens .token', (e) => e.length);
  check(n === 200, `long prompt has ${n} tokens (200 expected)`);
  const page200 = await page.evaluate(() => window.glass.timings);
  const lensCells = await page.$eval('#lens-grid', (c) => +c.dataset.cells);
  check(lensCells === 31 * 200, `200-token lens grid has ${lensCells} cells`);
  // Another head: a redraw of 40,000 cells.
  await page.selectOption('#head', '4');
  const heatmapMs = await page.evaluate(() => window.glass.timings.heatmapMs);
  // Scroll the lens grid to the end and back, a frame each.
  const scrollMs = await page.evaluate(async () => {
    const s = document.getElementById('lens-scroll');
    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    const times = [];
    for (const x of [s.scrollWidth, s.scrollWidth / 2, 0]) {
      s.scrollLeft = x;
      await frame();
      await frame();
      times.push(window.glass.timings.lensDrawMs);
    }
    return Math.max(...times);
  });
  const longest = await page.evaluate(() => window.__longest);
  timings['smollm2-200'] = {
    prompt_tokens: n,
    wall_ms: wall,
    page: page200,
    heatmap_redraw_ms: heatmapMs,
    lens_scroll_redraw_ms: scrollMs,
    longest_main_thread_task_ms: longest,
  };
  console.log(`200 tokens, lens on: server ${page200.serverMs.toFixed(0)} ms (lens ${page200.lensMs.toFixed(0)} ms); page parse ${page200.parseMs.toFixed(1)} ms, render ${page200.renderMs.toFixed(1)} ms; heatmap redraw ${heatmapMs.toFixed(1)} ms; lens scroll redraw ${scrollMs.toFixed(1)} ms; longest task ${longest.toFixed(0)} ms`);
  check(page200.renderMs < 1000, `the page renders a 200-token trace in ${page200.renderMs.toFixed(0)} ms (< 1000)`);
  check(heatmapMs < 100, `a 200×200 heatmap redraws in ${heatmapMs.toFixed(1)} ms (< 100)`);
  check(scrollMs < 50, `the lens grid redraws on scroll in ${scrollMs.toFixed(1)} ms (< 50)`);
  check(longest < 500, `no main-thread task over 500 ms (longest ${longest.toFixed(0)} ms)`);
  await page.screenshot({ path: join(shots, 'smollm2-200-tokens.png'), fullPage: true });

  // The semantic view: an embedding model and three sentences.
  {
    const sentences = ['A man is eating food.', 'A man is eating a piece of bread.', 'The new movie is awesome.'];
    await page.selectOption('#model', 'all-minilm');
    check(await page.isChecked('#semantic') && (await page.isDisabled('#semantic')), 'an embedding model turns the semantic view on, for good');
    check((await page.getAttribute('body', 'data-view')) === 'semantic', 'the page shows the semantic view');
    check((await page.isVisible('#texts')) && !(await page.isVisible('#prompt')) && !(await page.isVisible('#steps-section')), 'the texts box replaces the prompt and the trace');
    await page.fill('#texts', sentences.join('\n') + '\n');
    const t0 = Date.now();
    await page.click('#run');
    await page.waitForSelector('body[data-state="done"], body[data-state="error"]');
    const state = await page.getAttribute('body', 'data-state');
    if (state !== 'done') throw new Error(`semantic view: the page says ${await page.textContent('#status')}`);
    const wall = Date.now() - t0;
    const ref = await apiSemantic({ model: 'all-minilm', texts: sentences, pairs: 'all', precision: 4 });
    const n = sentences.length;

    const cells = await page.$$eval('#similarity .sim-cell', (cs) => cs.map((c) => ({ i: +c.dataset.i, j: +c.dataset.j, text: c.textContent, bg: getComputedStyle(c).backgroundColor })));
    check(cells.length === n * n, `similarity grid has ${cells.length} cells for ${n}×${n}`);
    const wrong = cells.filter((c) => c.text !== ref.similarity[c.i][c.j].toFixed(4) || Number(c.text) !== ref.similarity[c.i][c.j]);
    check(wrong.length === 0, `every grid cell shows the API's similarity (${wrong.map((c) => `${c.i},${c.j}: ${c.text}`).join('; ') || 'all equal'})`);
    const diag = cells.find((c) => c.i === 0 && c.j === 0);
    const far = cells.find((c) => c.i === 0 && c.j === 2);
    check(diag.bg !== far.bg && diag.bg !== 'rgba(0, 0, 0, 0)', `the grid is a heat map (${diag.bg} on the diagonal, ${far.bg} for #0↔#2)`);

    const firsts = await page.$$eval('#neighbours li', (lis) => lis.map((li) => {
      const f = li.querySelector('.nb-first');
      return { index: +f.dataset.index, text: f.textContent };
    }));
    const nbOk = firsts.length === n && firsts.every((f, i) => {
      const want = ref.texts[i].neighbours[0];
      return f.index === want.index && f.text === `#${want.index} ${want.similarity.toFixed(4)}`;
    });
    check(nbOk, `nearest neighbours are the API's (${firsts.map((f) => f.text).join(', ')})`);

    // The strip of a pair: two rows, one chip per token, each number the API's.
    const readStrip = () => page.$$eval('#strip .strip-row', (rows) => rows.map((r) => ({
      text: +r.dataset.text,
      chips: [...r.querySelectorAll('.ctok')].map((c) => c.querySelector('.c').textContent),
    })));
    const checkStrip = async (p, what) => {
      const strip = await readStrip();
      check(strip.length === 2 && strip[0].text === p.a && strip[1].text === p.b, `${what}: the strip shows texts #${p.a} and #${p.b}`);
      for (const [row, cs] of [[strip[0], p.a_contributions], [strip[1], p.b_contributions]]) {
        if (!row) continue;
        const tokens = ref.texts[row.text].tokens.length;
        check(row.chips.length === tokens && cs.length === tokens, `${what}: #${row.text} has ${row.chips.length} chips for ${tokens} tokens`);
        const same = row.chips.every((c, k) => Number(c) === cs[k] && c.replace(/^\+/, '') === cs[k].toFixed(4));
        check(same, `${what}: #${row.text}'s contributions are the API's (${row.chips.join(' ')})`);
        const sum = row.chips.reduce((s, c) => s + Number(c), 0);
        check(Math.abs(sum - p.similarity) <= 0.5e-4 * (tokens + 1), `${what}: #${row.text}'s contributions sum to ${sum.toFixed(4)}, the similarity ${p.similarity}`);
      }
    };
    // At first the most similar pair, then the one clicked.
    await checkStrip(ref.pairs[0], 'most similar pair');
    check(ref.pairs[0].a === 0 && ref.pairs[0].b === 1, 'the two eating sentences are the most similar pair');
    await page.click('#similarity .sim-cell[data-i="2"][data-j="0"]');
    const clicked = ref.pairs.find((p) => p.a === 0 && p.b === 2);
    await checkStrip(clicked, 'clicked pair');
    const selected = await page.$$eval('#similarity .sim-cell.selected', (cs) => cs.map((c) => `${c.dataset.i},${c.dataset.j}`).sort());
    check(JSON.stringify(selected) === JSON.stringify(['0,2', '2,0']), `the clicked pair's cells are outlined (${selected})`);
    timings['all-minilm-semantic'] = { texts: n, wall_ms: wall, page: await page.evaluate(() => window.glass.timings) };
    await page.screenshot({ path: join(shots, 'all-minilm-semantic.png'), fullPage: true });

    // Back to a generator: the trace view returns.
    await page.selectOption('#model', 'smollm2');
    check((await page.getAttribute('body', 'data-view')) === 'explain' && !(await page.isChecked('#semantic')), 'a generator goes back to the trace view');
  }

  // The chat playground, against a stand-in for the main server's
  // /v1/models and streaming /v1/chat/completions (OpenAI SSE): the
  // harness has neither.
  const chat = await context.newPage();
  chat.on('pageerror', (e) => check(false, 'no page error in chat: ' + e.message));
  let asked = null;
  await chat.route('**/v1/models', (r) =>
    r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ object: 'list', data: [{ id: 'smollm2', object: 'model' }] }) }),
  );
  await chat.route('**/v1/chat/completions', (r) => {
    asked = JSON.parse(r.request().postData());
    const chunk = (content) => `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;
    return r.fulfill({
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body: chunk('Bonjour') + chunk(', ') + chunk('Paris!') + 'data: [DONE]\n\n',
    });
  });
  await chat.goto(base + '/');
  await chat.waitForSelector('body[data-state="ready"]');
  await chat.fill('#chat-input', 'Say hello');
  await chat.click('#chat-send');
  await chat.waitForFunction(() => document.querySelector('.msg.assistant')?.textContent === 'Bonjour, Paris!');
  check(asked && asked.stream === true && asked.model === 'smollm2' && asked.messages.at(-1).content === 'Say hello', 'chat sends an OpenAI streaming request');
  check((await chat.textContent('.msg.user')) === 'Say hello', 'chat shows the user message');
  check(true, 'chat shows the streamed answer');
  await chat.close();
} catch (e) {
  check(false, 'the test ran to the end: ' + (e.stack || e));
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

writeFileSync(join(shots, 'timings.json'), JSON.stringify(timings, null, 2) + '\n');
if (failures.length) {
  console.error(`\n${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('\nall checks passed; screenshots and timings.json in ' + shots);
