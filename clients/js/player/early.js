// Opens the WebSocket while dash.js (about 1 MB) is still downloading, so the socket is ready
// when dash.js asks for the MPD: the TCP and WebSocket handshakes overlap the script load
// instead of delaying the first request. player.js hands the promise to attachDashPush.
import { DashPushClient } from './lib/client.js';

const params = new URLSearchParams(location.search);
if (params.get('transport') !== 'http') {
  const wsUrl = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/dashpush`;
  const connecting = DashPushClient.connect(wsUrl);
  // A failure is handled (fallback to HTTP) where the promise is used.
  connecting.catch(() => {});
  window.dashpushConnecting = { url: wsUrl, connecting };
}
