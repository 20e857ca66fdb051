// Types for the undici modules we import one by one: the package index pulls in fetch, WebSocket,
// cache and mocks (~270 KB of the Lambda bundle) that fanout never uses.
declare module 'undici/lib/dispatcher/agent.js' {
  import { Agent } from 'undici';
  export default Agent;
}
declare module 'undici/lib/core/connect.js' {
  import { buildConnector } from 'undici';
  export default buildConnector;
}
declare module 'undici/lib/core/errors.js' {
  import { errors } from 'undici';
  export default errors;
}
