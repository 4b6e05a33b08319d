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
    // began in it would seem to arrive in no time.
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
        queued += chunk.length;
        if (queued > windowBytes) upstream.pause();
        setTimeout(() => {
          queued -= chunk.length;
          carried += chunk.length;
          if (!closed) client.write(chunk);
          if (queued <= windowBytes / 2) upstream.resume();
        }, Math.max(0, deliverAt - now));
      }
    });
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', () => setTimeout(end, half + Math.max(0, linkFreeAt - performance.now())));
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

