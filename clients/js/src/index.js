// dashpush client: the WebSocket sub-protocol codec, the client, and the dash.js integration.
export * from './codec.js';
export * from './client.js';
export { attachDashPush, DEFAULT_MPD_DIRECTIVE, DEFAULT_SEGMENT_DIRECTIVE } from './dashjs.js';
