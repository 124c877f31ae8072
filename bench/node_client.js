// The older bridge's benchmark pattern (performance.md) as a Node `ws` client; run by routing_compare.py.
// node node_client.js URL N RECEIVERS CONFIRM(0|1): prints {"seconds": first send -> last delivery/confirm}
const WebSocket = require('ws');
const [url, n, receivers, confirm] = [process.argv[2], +process.argv[3], +process.argv[4], process.argv[5] === '1'];
function agent(id, confirm) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'register', clientId: id, confirm })));
    const first = (data) => {
      if (JSON.parse(data).type === 'registered') { ws.off('message', first); resolve(ws); }
    };
    ws.on('message', first);
  });
}
(async () => {
  const ids = receivers === 1 ? ['dst'] : Array.from({ length: receivers }, (_, i) => 'dst' + i);
  const sinks = [];
  for (const id of ids) sinks.push(await agent(id, false));
  const src = await agent('src', confirm);
  let waiting = n * receivers + (confirm ? n : 0);
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const tick = () => { if (--waiting === 0) done(process.hrtime.bigint()); };
  for (const ws of sinks) ws.on('message', (d) => { if (d.toString('utf8', 0, 18) === '{"type":"envelope"') tick(); });
  if (confirm) src.on('message', (d) => { if (d.toString('utf8', 0, 18) === '{"type":"accepted"') tick(); });
  const to = receivers === 1 ? { to: 'dst' } : {};
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    src.send(JSON.stringify({ type: 'envelope', envelope: { ...to, intent: 'bench', taskId: 't' + (i % 50), payload: { i, text: 'hello world' } } }));
  }
  const end = await Promise.race([finished, new Promise((r) => setTimeout(() => r(null), 120000))]);
  if (end === null) { console.log(JSON.stringify({ error: `timed out with ${waiting} still to come` })); process.exit(1); }
  console.log(JSON.stringify({ seconds: Number(end - start) / 1e9 }));
  process.exit(0);
})().catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
