/// <reference path="./interfaces/dibop-plugin-config.d.ts" />
/// <reference path="./interfaces/dibop-plugin-log.d.ts" />
/// <reference path="./interfaces/dibop-plugin-secrets.d.ts" />
/// <reference path="./interfaces/dibop-plugin-types.d.ts" />
declare module 'dibop:plugin/connector@0.1.0' {
  export type Json = import('dibop:plugin/types@0.1.0').Json;
  export type PluginError = import('dibop:plugin/types@0.1.0').PluginError;
  export type ConnectorInfo = import('dibop:plugin/types@0.1.0').ConnectorInfo;
  export type CallContext = import('dibop:plugin/types@0.1.0').CallContext;
  export type Health = import('dibop:plugin/types@0.1.0').Health;
  export type * as DibopPluginConfig010 from 'dibop:plugin/config@0.1.0'; // import dibop:plugin/config@0.1.0
  export type * as DibopPluginLog010 from 'dibop:plugin/log@0.1.0'; // import dibop:plugin/log@0.1.0
  export type * as DibopPluginSecrets010 from 'dibop:plugin/secrets@0.1.0'; // import dibop:plugin/secrets@0.1.0
  export type * as DibopPluginTypes010 from 'dibop:plugin/types@0.1.0'; // import dibop:plugin/types@0.1.0
  /**
  * Describes the connector: identity, configuration it needs, operations it offers.
  * Called once at upload, under the same limits as any call.
  */
  export function describe(): ConnectorInfo;
  /**
  * Runs one operation with `input` (a JSON object) and answers its output (JSON).
  */
  export function invoke(operation: string, input: Json, context: CallContext): Json;
  /**
  * Checks that the system is reachable with the connection's configuration.
  */
  export function ping(): Health;
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}
