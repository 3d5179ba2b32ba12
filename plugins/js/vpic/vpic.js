// `vpic-js`: the vPIC VIN decoder connector written in JavaScript (a twin of the Rust `vpic`).
//
// Connection settings: `base_url` (default https://vpic.nhtsa.dot.gov/api) and the optional
// credential `api_key`, sent as `X-Api-Key`. Operation `decode_vin` (`{"vin": "..."}`) answers
// `{"vin", "make", "model", "year", "trim", "body_class", "engine_type", "fuel_type"}`.
// Outbound HTTP is plain `fetch`: the host runs it through wasi:http with the connection's
// allow-list, limits and API-call log.

import { get as configGet } from 'dibop:plugin/config@0.1.0';
import { get as secretGet } from 'dibop:plugin/secrets@0.1.0';
import { write as log } from 'dibop:plugin/log@0.1.0';

const DEFAULT_BASE_URL = 'https://vpic.nhtsa.dot.gov/api';
const VIN = /^[A-HJ-NPR-Z0-9]{17}$/;
const NULLABLE = { type: ['string', 'null'] };

/** Fails the operation with a DIBOP plugin error. */
class PluginError extends Error {
  constructor(code, message, { retryable = false, httpStatus } = {}) {
    super(message);
    this.payload = { code, message, retryable, httpStatus };
  }
}

function upstream(status, message) {
  const code = status === 404 ? 'not_found' : status === 401 || status === 403 ? 'auth' : 'upstream';
  return new PluginError(code, message, { retryable: status >= 500 || status === 429, httpStatus: status });
}

/** A configuration value of the connection (the host hands it over as JSON text). */
function config(key) {
  const text = configGet(key);
  return text === undefined || text === null ? undefined : JSON.parse(text);
}

function baseUrl() {
  const url = String(config('base_url') ?? '').trim().replace(/\/+$/, '');
  return url || DEFAULT_BASE_URL;
}

function headers() {
  const key = secretGet('api_key');
  return key ? { Accept: 'application/json', 'X-Api-Key': key } : { Accept: 'application/json' };
}

async function get(url) {
  try {
    return await fetch(url, { headers: headers() });
  } catch (e) {
    throw new PluginError('network', `the request failed: ${e.message ?? e}`, { retryable: true });
  }
}

function text(result, name) {
  const value = result[name];
  if (typeof value === 'string' && value.trim() !== '') return value.trim();
  if (typeof value === 'number') return String(value);
  return null;
}

function engineSummary(result) {
  const parts = [];
  const litres = text(result, 'DisplacementL');
  if (litres) {
    const l = Number(litres);
    parts.push(Number.isNaN(l) ? `${litres}L` : `${l.toFixed(1)}L`);
  }
  const configuration = text(result, 'EngineConfiguration');
  if (configuration) parts.push(configuration);
  const cylinders = text(result, 'EngineCylinders');
  if (cylinders) parts.push(`${cylinders}-cyl`);
  return parts.length ? parts.join(' ') : null;
}

export function summarize(vin, answer) {
  const result = (answer.Results ?? [])[0] ?? {};
  const make = text(result, 'Make');
  if (!make) throw new PluginError('not_found', `vPIC knows no vehicle for VIN ${vin}`);
  const year = text(result, 'ModelYear');
  return {
    vin,
    make,
    model: text(result, 'Model'),
    year: year && /^\d+$/.test(year) ? Number(year) : year,
    trim: text(result, 'Trim'),
    body_class: text(result, 'BodyClass'),
    engine_type: text(result, 'EngineModel') ?? engineSummary(result),
    fuel_type: text(result, 'FuelTypePrimary'),
  };
}

async function decodeVin(input) {
  if (typeof input.vin !== 'string') throw new PluginError('invalid_input', 'the input needs a string field `vin`');
  const vin = input.vin.trim().toUpperCase();
  if (!VIN.test(vin)) {
    throw new PluginError('invalid_input', `"${vin}" is not a VIN: expected 17 letters or digits, without I, O or Q`);
  }
  log('debug', 'decoding', JSON.stringify({ vin }));
  const response = await get(`${baseUrl()}/vehicles/DecodeVinValues/${vin}?format=json`);
  if (!response.ok) throw upstream(response.status, `vPIC answered HTTP ${response.status} for VIN ${vin}`);
  let answer;
  try {
    answer = await response.json();
  } catch (e) {
    throw new PluginError('upstream', `the answer is not JSON: ${e.message}`);
  }
  return summarize(vin, answer);
}

export function describe() {
  return {
    slug: 'vpic-js',
    name: 'NHTSA vPIC (JavaScript)',
    systemType: 'general',
    version: '1.0.0',
    description: 'Decodes VINs with the NHTSA vPIC API; written in JavaScript.',
    auth: 'none',
    config: [
      { name: 'base_url', description: `Base URL of the vPIC API (default ${DEFAULT_BASE_URL})`, required: false, secret: false },
      { name: 'api_key', description: 'Optional key sent as the X-Api-Key header', required: false, secret: true },
    ],
    operations: [
      {
        name: 'decode_vin',
        method: 'GET',
        path: '/vehicles/DecodeVinValues/{vin}',
        description: 'Decodes a 17-character VIN into make, model, model year, trim, body, engine and fuel.',
        inputSchema: JSON.stringify({
          type: 'object',
          required: ['vin'],
          properties: { vin: { type: 'string', pattern: '^[A-HJ-NPR-Za-hj-npr-z0-9]{17}$' } },
        }),
        outputSchema: JSON.stringify({
          type: 'object',
          properties: {
            vin: { type: 'string' }, make: NULLABLE, model: NULLABLE, year: { type: ['integer', 'string', 'null'] },
            trim: NULLABLE, body_class: NULLABLE, engine_type: NULLABLE, fuel_type: NULLABLE,
          },
        }),
      },
      {
        name: 'echo',
        method: 'NONE',
        path: '',
        description: 'Answers its input without any request (for timing a bare call).',
        inputSchema: JSON.stringify({ type: 'object' }),
        outputSchema: JSON.stringify({ type: 'object' }),
      },
    ],
  };
}

export async function invoke(operation, input, _context) {
  if (operation === 'echo') return input;
  if (operation !== 'decode_vin') {
    throw new PluginError('invalid_input', `unknown operation \`${operation}\`; vpic-js offers \`decode_vin\``);
  }
  let parsed;
  try {
    parsed = JSON.parse(input);
  } catch (e) {
    throw new PluginError('invalid_input', `the input is not JSON: ${e.message}`);
  }
  return JSON.stringify(await decodeVin(parsed));
}

export async function ping() {
  try {
    const response = await get(`${baseUrl()}/vehicles/GetMakesForVehicleType/car?format=json`);
    if (response.status === 401 || response.status === 403) return { status: 'auth-error', message: `HTTP ${response.status}` };
    return response.ok ? { status: 'online' } : { status: 'offline', message: `HTTP ${response.status}` };
  } catch (e) {
    return { status: 'offline', message: String(e.payload?.message ?? e) };
  }
}
