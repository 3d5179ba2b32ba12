declare module 'dibop:plugin/types@0.1.0' {
  /**
   * A JSON document (any JSON value) as UTF-8 text.
   */
  export type Json = string;
  /**
   * How a call failed, in terms the engine can act on. Return this for every failure you
   * expect (bad input, upstream errors, missing records); traps are for bugs.
   */
  export interface PluginError {
    /**
     * A stable, machine-readable code such as `invalid_input`, `not_found`,
     * `unauthorized`, `upstream_error` or `timeout`.
     */
    code: string,
    /**
     * What went wrong, for people. Never put credentials here.
     */
    message: string,
    /**
     * Whether trying the same call again may succeed. The step's retry policy decides
     * whether the engine actually retries.
     */
    retryable: boolean,
    /**
     * The upstream HTTP status behind the error, if there was one.
     */
    httpStatus?: number,
  }
  /**
   * The kind of business system a connector talks to (the catalogue groups by it).
   * # Variants
   * 
   * ## `"general"`
   * 
   * ## `"oem"`
   * 
   * ## `"dms"`
   * 
   * ## `"crm"`
   * 
   * ## `"finance"`
   * 
   * ## `"telematics"`
   * 
   * ## `"logistics"`
   */
  export type SystemType = 'general' | 'oem' | 'dms' | 'crm' | 'finance' | 'telematics' | 'logistics';
  /**
   * How the connector authenticates against its system.
   * # Variants
   * 
   * ## `"none"`
   * 
   * ## `"api-key"`
   * 
   * ## `"basic"`
   * 
   * ## `"bearer"`
   * 
   * ## `"oauth2-client-credentials"`
   */
  export type AuthType = 'none' | 'api-key' | 'basic' | 'bearer' | 'oauth2-client-credentials';
  /**
   * One setting a connection of this connector needs.
   */
  export interface ConfigKey {
    /**
     * The key, e.g. `base_url` or `api_key`.
     */
    name: string,
    /**
     * What it is for.
     */
    description: string,
    /**
     * Whether a connection must set it.
     */
    required: boolean,
    /**
     * Whether it is a credential: credentials are stored encrypted, never shown, and read
     * through the `secrets` interface instead of `config`.
     */
    secret: boolean,
  }
  /**
   * One operation the connector offers (an "API" in the systems catalogue).
   */
  export interface Operation {
    /**
     * Name used by orchestration steps, e.g. `decode_vin`.
     */
    name: string,
    /**
     * HTTP method it uses upstream, e.g. `GET`.
     */
    method: string,
    /**
     * Path template upstream, e.g. `/vehicles/DecodeVinValues/{vin}`.
     */
    path: string,
    /**
     * What it does.
     */
    description: string,
    /**
     * JSON Schema of the input, as JSON text.
     */
    inputSchema: Json,
    /**
     * JSON Schema of the output, as JSON text.
     */
    outputSchema: Json,
  }
  /**
   * What a connector says about itself.
   */
  export interface ConnectorInfo {
    /**
     * Catalogue identifier: lowercase letters, digits and dashes, e.g. `vpic`.
     */
    slug: string,
    /**
     * Display name.
     */
    name: string,
    /**
     * Kind of system.
     */
    systemType: SystemType,
    /**
     * Semantic version of this build; a slug and version pair is immutable once uploaded.
     */
    version: string,
    /**
     * One or two sentences for the catalogue.
     */
    description: string,
    /**
     * How it authenticates.
     */
    auth: AuthType,
    /**
     * Settings a connection provides.
     */
    config: Array<ConfigKey>,
    /**
     * Operations it offers.
     */
    operations: Array<Operation>,
  }
  /**
   * Where a call comes from.
   */
  export interface CallContext {
    /**
     * The execution this call belongs to; none for connection tests and pings.
     */
    executionId?: string,
    /**
     * The orchestration step; none outside orchestrations.
     */
    step?: string,
    /**
     * 1 for the first attempt, then 2, 3, ... on retries.
     */
    attempt: number,
    /**
     * Stable across retries and restarts of the same step: pass it upstream (for example
     * as an `Idempotency-Key` header) so a repeated write is not applied twice.
     */
    idempotencyKey: string,
  }
  /**
   * Result of a health check as the connector sees it. The host reports `timeout` itself.
   * # Variants
   * 
   * ## `"online"`
   * 
   * The system answered as expected.
   * ## `"offline"`
   * 
   * The system could not be reached or answered with an error.
   * ## `"auth-error"`
   * 
   * The system answered but refused the credentials.
   */
  export type HealthStatus = 'online' | 'offline' | 'auth-error';
  /**
   * A health check result.
   */
  export interface Health {
    status: HealthStatus,
    /**
     * Details for people, e.g. the upstream status line.
     */
    message?: string,
  }
  /**
   * What a transform says about itself.
   */
  export interface TransformInfo {
    /**
     * Identifier used by `transform` steps, e.g. `vin-check`.
     */
    slug: string,
    /**
     * Display name.
     */
    name: string,
    /**
     * Semantic version of this build.
     */
    version: string,
    /**
     * What it does.
     */
    description: string,
    /**
     * JSON Schema of the step parameters, as JSON text.
     */
    paramsSchema: Json,
  }
}
