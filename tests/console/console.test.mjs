// Browser test of the imdsd web console: a real `imdsd serve --demo` on
// ephemeral ports, Debian's Chromium driven by playwright-core.
//
// It checks that the console lists the demo instance with its metadata
// options and `applied`, that an IMDSv1 call made to the data plane shows
// up (after the usage recorder's flush) as a v1 caller of the instance with
// its User-Agent, that a hostile User-Agent stays text, that the page runs
// under its Content-Security-Policy without errors, and takes a screenshot.
//
// Environment: IMDSD_BIN (the imdsd binary, required), CHROMIUM_BIN
// (default /usr/bin/chromium), CONSOLE_SCREENSHOT (where to write the PNG;
// default a new temporary directory; the path is printed).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const DEMO_ID = 'i-0123456789abcdef0';
const AGENT = 'console-test-agent/1.0';
const HOSTILE_AGENT = 'evil/1.0 <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
const START_TIMEOUT_MS = 60_000;
// The usage recorder flushes every 10 s; allow three flushes.
const FLUSH_WAIT_MS = 30_000;
const LISTEN_RE = /^listening (data|admin|control) (http:\/\/\S+)$/;

let server; // { proc, tmp, stderrPath, data, admin }
let context; // playwright persistent context
let profileDir;

function startImdsd() {
  const binary = process.env.IMDSD_BIN;
  assert.ok(binary, 'IMDSD_BIN is not set: cargo build --bin imdsd, then IMDSD_BIN=$PWD/target/debug/imdsd');
  fs.accessSync(binary, fs.constants.X_OK);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imdsd-console-'));
  const stderrPath = path.join(tmp, 'imdsd.stderr');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IMDSD_')));
  env.IMDSD_LOG = 'info';
  const argv = [
    'serve', '--demo',
    '--data-dir', path.join(tmp, 'data'),
    '--data-listen', '127.0.0.1:0',
    '--control-listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0',
  ];
  const stderr = fs.openSync(stderrPath, 'w');
  const proc = spawn(binary, argv, { env, stdio: ['ignore', 'pipe', stderr] });
  fs.closeSync(stderr);
  return new Promise((resolve, reject) => {
    const found = {};
    const fail = (msg) => {
      proc.kill('SIGKILL');
      reject(new Error(msg + '\nstderr:\n' + fs.readFileSync(stderrPath, 'utf8')));
    };
    const timer = setTimeout(() => fail(`imdsd printed no listening lines in ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    proc.on('exit', (code) => {
      if (!(found.admin && found.data)) {
        clearTimeout(timer);
        fail(`imdsd exited with status ${code} before it was ready`);
      }
    });
    // Keep reading stdout for the process's life so it never blocks.
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      const m = LISTEN_RE.exec(line);
      if (!m) return;
      if (m[1] === 'admin' || (m[1] === 'data' && !found.data)) found[m[1]] = m[2];
      if (found.admin && found.data && !found.done) {
        found.done = true;
        clearTimeout(timer);
        resolve({ proc, tmp, stderrPath, data: found.data, admin: found.admin });
      }
    });
  });
}

async function stopImdsd(s) {
  if (!s || s.proc.exitCode !== null) return;
  const exited = new Promise((resolve) => s.proc.once('exit', resolve));
  s.proc.kill('SIGTERM');
  const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), 15_000));
  if ((await Promise.race([exited, timeout])) === 'timeout') {
    s.proc.kill('SIGKILL');
    await exited;
  }
}

/** One plain HTTP request (no proxy, no keep-alive); resolves {status, headers, body}. */
function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  server = await startImdsd();
  profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imdsd-console-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  if (context) await context.close().catch(() => {});
  await stopImdsd(server);
  for (const dir of [profileDir, server && server.tmp]) {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('console shows the demo instance and its IMDSv1 callers', { timeout: 180_000 }, async () => {
  const problems = [];
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push('console error: ' + msg.text());
  });
  page.on('pageerror', (err) => problems.push('page error: ' + err.message));

  try {
    // The page and its policy.
    const resp = await page.goto(server.admin + '/');
    assert.equal(resp.status(), 200);
    const csp = resp.headers()['content-security-policy'] || '';
    assert.match(csp, /^default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await page.locator('#readonly-note').waitFor();
    assert.match(await page.locator('#readonly-note').innerText(), /read-only/);

    // The demo instance, its options, applied.
    const row = page.locator(`#instances tbody tr[data-instance-id="${DEMO_ID}"]`);
    await row.waitFor({ timeout: 15_000 });
    const cell = (cls) => row.locator('td.' + cls).innerText();
    assert.equal(await cell('name'), 'demo-instance');
    assert.equal(await cell('state'), 'running');
    assert.equal(await cell('ip'), '127.0.0.1');
    assert.equal(await cell('opt-http-tokens'), 'optional');
    assert.equal(await cell('opt-http-put-response-hop-limit'), '1');
    assert.equal(await cell('opt-http-endpoint'), 'enabled');
    assert.equal(await cell('opt-http-protocol-ipv6'), 'enabled');
    assert.equal(await cell('opt-instance-metadata-tags'), 'enabled');
    await page.waitForFunction(
      (id) => document.querySelector(`#instances tbody tr[data-instance-id="${id}"] td.options-state`)?.textContent === 'applied',
      DEMO_ID,
      { timeout: 15_000 },
    );

    // No IMDSv1 call yet: the demo instance is listed as safe to switch.
    await page.locator('#safe-list a', { hasText: DEMO_ID }).waitFor({ timeout: 10_000 });
    assert.match(await page.locator('#safe-list li', { hasText: DEMO_ID }).innerText(), /ready for --http-tokens required/);
    await page.locator('#callers-empty:not([hidden])').waitFor({ timeout: 10_000 });

    // An event, so the events table has a row.
    const ev = await request(server.admin + '/v1/events', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ instance_id: DEMO_ID, kind: 'rebalance', notice_time: Math.floor(Date.now() / 1000) }),
    });
    assert.equal(ev.status, 201, ev.body);

    // IMDSv1 calls from 127.0.0.1 (the demo instance's address).
    for (const ua of [AGENT, HOSTILE_AGENT]) {
      const r = await request(server.data + '/latest/meta-data/instance-id', { headers: { 'User-Agent': ua } });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, DEMO_ID);
    }

    // Wait for the recorder to flush; reload until the console shows it.
    const deadline = Date.now() + FLUSH_WAIT_MS;
    let shown = false;
    while (!shown) {
      await page.goto(`${server.admin}/#${DEMO_ID}`);
      await page.reload();
      await page.locator('#detail:not([hidden])').waitFor({ timeout: 10_000 });
      shown = (await page.locator('#callers tbody td.ua', { hasText: AGENT }).count()) > 0;
      if (!shown) {
        assert.ok(Date.now() < deadline, `${AGENT} not shown as a v1 caller within ${FLUSH_WAIT_MS} ms`);
        await new Promise((r) => setTimeout(r, 2_000));
      }
    }
    assert.equal(await page.locator('#detail-id').innerText(), DEMO_ID);
    const caller = page.locator('#callers tbody tr', { hasText: AGENT });
    assert.equal(await caller.count(), 1);
    const texts = await caller.locator('td').allInnerTexts();
    assert.equal(texts[0], '127.0.0.1');
    assert.equal(texts[1], AGENT);
    assert.equal(texts[2], '/latest/meta-data/instance-id');
    assert.equal(texts[3], '1');
    assert.match(texts[4], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);

    // The hostile User-Agent is shown as text and did nothing.
    await page.locator('#callers tbody td.ua', { hasText: 'evil/1.0' }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#callers tbody td.ua', { hasText: 'evil/1.0' }).innerText(), HOSTILE_AGENT);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator('img').count(), 0);

    // Summary: the demo instance still calls IMDSv1, so it is not "safe".
    assert.equal(await page.locator('#unsafe-list a', { hasText: DEMO_ID }).count(), 1);
    assert.equal(await page.locator('#safe-list a', { hasText: DEMO_ID }).count(), 0);
    await page.waitForFunction(
      (id) => document.querySelector(`#instances tbody tr[data-instance-id="${id}"] td.v1-calls`)?.textContent === '2',
      DEMO_ID,
      { timeout: 10_000 },
    );

    // The last-hour chart has a bar for the minute of the calls.
    assert.ok((await page.locator('#chart-hour svg rect.bar').count()) >= 1, 'no bar in the last-hour chart');
    assert.ok((await page.locator('#chart-day svg rect.bar').count()) >= 1, 'no bar in the last-day chart');
    assert.match(await page.locator('#chart-hour .chart-total').innerText(), /\(2 requests\)/);

    // The event.
    assert.equal(await page.locator('#events tbody tr', { hasText: 'rebalance' }).count(), 1);

    const shot = process.env.CONSOLE_SCREENSHOT ||
      path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'imdsd-console-shot-')), 'console.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    assert.deepEqual(problems, [], 'the page logged errors (CSP violations included)');
  } catch (e) {
    const stderr = fs.readFileSync(server.stderrPath, 'utf8').split('\n').slice(-40).join('\n');
    e.message += `\nbrowser problems: ${JSON.stringify(problems)}\nimdsd stderr (tail):\n${stderr}`;
    throw e;
  } finally {
    await page.close();
  }
});
