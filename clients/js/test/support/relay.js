// A userspace access link for browser tests and benchmarks: a TCP relay in front of the gateway
// whose server-to-client direction is one shared link of a given rate (every connection of the
// viewer queues on it, as on a real access link) plus half a round trip of delay each way.
// Back-pressure is real: a connection whose queued bytes exceed `windowBytes` stops reading from
// the gateway until the link has carried them, so the gateway sees its send windows fill.
//
//   const relay = await startRelay({ upstreamPort, rateKbit: 650, rttMs: 40 });
//   relay.port; relay.setRate(5000); relay.throttle(false); await relay.close();
//
// `rateKbit` may also be a function of the seconds since the relay started (a step, say). While
// `throttle(false)`, bytes pass at once, with no delay (used to load a page's scripts before the
// link applies).
import net from 'node:net';

/** Bytes the link carries as one unit (an Ethernet MSS): they arrive together. */
const PACKET = 1448;

export async function startRelay({ upstreamPort, upstreamHost = '127.0.0.1', rateKbit = 1000, rttMs = 40, windowBytes = 64 * 1024 } = {}) {
  const started = performance.now();
  let rate = rateKbit;
  let throttled = true;
  // When the shared downstream link is free again (performance.now() ms).
  let linkFreeAt = 0;
  let carried = 0;
  const sockets = new Set();
  const half = rttMs / 2;
  const kbitNow = () => (typeof rate === 'function' ? rate((performance.now() - started) / 1000) : rate);

  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ port: upstreamPort, host: upstreamHost });
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    let queued = 0;
    let closed = false;
    const end = () => {
      if (closed) return;
      closed = true;
      if (timer !== null) clearTimeout(timer);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    // Client to gateway: half a round trip, no rate cap (requests are small).
    client.on('data', (chunk) => {
      setTimeout(
        () => {
          if (!closed) upstream.write(chunk);
        },
        throttled ? half : 0,
      );
    });
    // Gateway to client: the shared link, then half a round trip. What one read brings (up to
    // 64 KiB) crosses the link packet by packet, each delivered when its own transmission ends,
    // as on a real link: delivered whole at the end of the read's transmission, a message that
    // began in it would seem to arrive in no time. The packets wait in one queue per connection
    // and leave it in order: a timer each would not keep them in order (Node rounds a timer's
    // delay down to the millisecond from a loop clock that lags, so a packet read later can come
    // due before the one read just before it, and the stream arrives scrambled).
    const pending = [];
    let head = 0;
    let timer = null;
    let upstreamClosed = false;
    // The gateway closed and the link has carried everything: the client's side ends after
    // what it was written (destroying it would drop writes still buffered in the socket).
    const finish = () => {
      if (!closed) client.end(); // its 'close' then ends the rest
    };
    const pump = () => {
      timer = null;
      const t = performance.now();
      while (head < pending.length && pending[head].at <= t) {
        const { chunk } = pending[head];
        pending[head++] = undefined; // sent: its buffer is not kept for the connection's life
        queued -= chunk.length;
        carried += chunk.length;
        if (!closed) client.write(chunk);
      }
      if (head === pending.length) {
        pending.length = 0;
        head = 0;
        if (upstreamClosed) finish();
      } else {
        timer = setTimeout(pump, pending[head].at - t);
      }
      if (queued <= windowBytes / 2) upstream.resume();
    };
    upstream.on('data', (data) => {
      const now = performance.now();
      for (let at = 0; at < data.length; at += PACKET) {
        const chunk = data.subarray(at, Math.min(at + PACKET, data.length));
        let deliverAt = now;
        if (throttled) {
          const kbit = Math.max(1, kbitNow());
          const txMs = (chunk.length * 8) / kbit; // kbit/s = bits per ms
          linkFreeAt = Math.max(linkFreeAt, now) + txMs;
          deliverAt = linkFreeAt + half;
        }
        // Never before what this connection already queued (the link may be turned off).
        const last = pending.length > head ? pending[pending.length - 1].at : 0;
        pending.push({ at: Math.max(deliverAt, last), chunk });
        queued += chunk.length;
        if (queued > windowBytes) upstream.pause();
      }
      if (timer === null) timer = setTimeout(pump, Math.max(0, pending[head].at - now));
    });
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    // The gateway closed: the client's side closes once the link has carried what is queued.
    upstream.on('close', () => {
      upstreamClosed = true;
      if (head === pending.length) setTimeout(finish, throttled ? half : 0);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    /** Sets the link rate (kbit/s, or a function of seconds since start). */
    setRate(r) {
      rate = r;
    },
    /** Turns the link's rate and delay on or off. */
    throttle(on) {
      throttled = on;
    },
    /** Bytes carried to clients so far. */
    get carried() {
      return carried;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

