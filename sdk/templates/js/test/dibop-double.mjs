// What 'dibop' gives the connector, for unit tests under Node.js: settings and credentials come
// from `connection`, log lines are kept in `connection.logs`.
export const connection = { config: {}, secrets: {}, logs: [] };

export class PluginError extends Error {
  constructor(code, message, { retryable = false, httpStatus } = {}) {
    super(message);
    this.name = 'PluginError';
    this.payload = { code, message, retryable, httpStatus };
  }
}

export function config(key) {
  return connection.config[key];
}

export function secret(name) {
  return connection.secrets[name];
}

export function log(level, message, fields = {}) {
  connection.logs.push({ level, message, fields });
}
