#!/usr/bin/env node
// A zero-latency fake OpenAI upstream for freeapi's benchmark (bench/README.md).
//
//   node bench/upstream.js [--port 18100] [--host 127.0.0.1]
//
// POST /v1/chat/completions (also /chat/completions):
//   stream false -> one chat.completion JSON (Content-Length, keep-alive)
//   stream true  -> 20 SSE chunks then `data: [DONE]`, each its own HTTP chunk, back to back
//   a model whose name contains "slow" -> SSE, one chunk every SLOW_INTERVAL_MS (250) for
//     SLOW_DURATION_MS (30000), i.e. 120 chunks; chunk i carries content "<i> " so a client
//     can check order; the header `x-fake-slow: 1` selects the same mode for any model.
// POST /anthropic/v1/messages: a vendor's native Anthropic endpoint (for the /v1/messages
//   door's pass-through): a Message JSON, or with stream true the same 20 pieces of text as
//   Anthropic events (message_start, one text block, message_delta, message_stop).
// GET /v1/models answers a one-model list; GET /stats the counters below.
// Plain `http`, no dependencies; request bodies are JSON-parsed (they are small).
'use strict';
const http = require('http');

const args = process.argv.slice(2);
function arg(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
}
const PORT = Number(arg('--port', process.env.PORT || 18100));
const HOST = arg('--host', '127.0.0.1');
const SLOW_INTERVAL_MS = Number(process.env.SLOW_INTERVAL_MS || 250);
const SLOW_DURATION_MS = Number(process.env.SLOW_DURATION_MS || 30000);
const STREAM_CHUNKS = Number(process.env.STREAM_CHUNKS || 20);

const stats = { requests: 0, streams: 0, slow_streams: 0, slow_open: 0, slow_aborted: 0, errors: 0 };
const CREATED = Math.floor(Date.now() / 1000);

function completion(model) {
  return JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: CREATED,
    model,
    choices: [{
      index: 0,
      message: { role: 'assistant', content: 'Hello! This is the benchmark upstream answering.' },
      logprobs: null,
      finish_reason: 'stop',
    }],
    usage: { prompt_tokens: 9, completion_tokens: 10, total_tokens: 19 },
  });
}

function chunk(model, i, content, finish) {
  const delta = i === 0 ? { role: 'assistant', content } : { content };
  return 'data: ' + JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created: CREATED,
    model,
    choices: [{ index: 0, delta: finish ? {} : delta, logprobs: null, finish_reason: finish || null }],
  }) + '\n\n';
}

const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
};

function fastStream(res, model) {
  stats.streams++;
  res.writeHead(200, SSE_HEADERS);
  // One write per event, as a vendor sends them; the last one carries finish_reason.
  for (let i = 0; i < STREAM_CHUNKS - 1; i++) res.write(chunk(model, i, 'tok' + i + ' '));
  res.write(chunk(model, STREAM_CHUNKS - 1, '', 'stop'));
  res.end('data: [DONE]\n\n');
}

function slowStream(req, res, model) {
  stats.slow_streams++;
  stats.slow_open++;
  res.writeHead(200, SSE_HEADERS);
  const total = Math.max(1, Math.round(SLOW_DURATION_MS / SLOW_INTERVAL_MS));
  let i = 0;
  let done = false;
  const finish = (aborted) => {
    if (done) return;
    done = true;
    clearInterval(timer);
    stats.slow_open--;
    if (aborted) stats.slow_aborted++;
  };
  const timer = setInterval(() => {
    if (i < total) {
      res.write(chunk(model, i, i + ' '));
      i++;
      return;
    }
    res.write(chunk(model, i, '', 'stop'));
    res.end('data: [DONE]\n\n');
    finish(false);
  }, SLOW_INTERVAL_MS);
  res.on('close', () => finish(!res.writableEnded));
}

function anthropicMessage(model) {
  return JSON.stringify({
    id: 'msg_bench', type: 'message', role: 'assistant', model,
    content: [{ type: 'text', text: 'Hello! This is the benchmark upstream answering.' }],
    stop_reason: 'end_turn', stop_sequence: null,
    usage: { input_tokens: 9, output_tokens: 10 },
  });
}

function event(name, data) {
  return 'event: ' + name + '\ndata: ' + JSON.stringify(data) + '\n\n';
}

function anthropicStream(res, model) {
  stats.streams++;
  res.writeHead(200, SSE_HEADERS);
  res.write(event('message_start', { type: 'message_start', message: {
    id: 'msg_bench', type: 'message', role: 'assistant', model, content: [],
    stop_reason: null, stop_sequence: null, usage: { input_tokens: 9, output_tokens: 1 } } }));
  res.write(event('content_block_start', { type: 'content_block_start', index: 0,
    content_block: { type: 'text', text: '' } }));
  for (let i = 0; i < STREAM_CHUNKS - 1; i++) {
    res.write(event('content_block_delta', { type: 'content_block_delta', index: 0,
      delta: { type: 'text_delta', text: 'tok' + i + ' ' } }));
  }
  res.write(event('content_block_stop', { type: 'content_block_stop', index: 0 }));
  res.write(event('message_delta', { type: 'message_delta',
    delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 10 } }));
  res.end(event('message_stop', { type: 'message_stop' }));
}

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  stats.requests++;
  const url = req.url;
  if (req.method === 'GET') {
    if (url === '/stats') return send(res, 200, JSON.stringify(stats));
    if (url === '/v1/models' || url === '/models') {
      return send(res, 200, JSON.stringify({ object: 'list', data: [{ id: 'deepseek-chat', object: 'model', created: CREATED, owned_by: 'bench' }] }));
    }
    return send(res, 404, '{"error":{"message":"not found"}}');
  }
  const native = url === '/anthropic/v1/messages';
  if (req.method !== 'POST' || !(native || url === '/v1/chat/completions' || url === '/chat/completions')) {
    return send(res, 404, '{"error":{"message":"not found"}}');
  }
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(parts.length === 1 ? parts[0] : Buffer.concat(parts));
    } catch (e) {
      stats.errors++;
      return send(res, 400, '{"error":{"message":"bad json","type":"invalid_request_error"}}');
    }
    const model = typeof body.model === 'string' ? body.model : 'unknown';
    if (native) return body.stream === true ? anthropicStream(res, model) : send(res, 200, anthropicMessage(model));
    if (model.includes('slow') || req.headers['x-fake-slow'] === '1') return slowStream(req, res, model);
    if (body.stream === true) return fastStream(res, model);
    send(res, 200, completion(model));
  });
});

server.keepAliveTimeout = 120000;   // longer than any gateway's pool idle time
server.headersTimeout = 121000;
server.requestTimeout = 0;          // slow streams last 30 s
server.maxRequestsPerSocket = 0;
server.listen(PORT, HOST, 4096, () => {
  console.log(`fake upstream listening on http://${HOST}:${PORT}/v1 (pid ${process.pid})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
