declare module 'dibop:plugin/config@0.1.0' {
  /**
   * One configuration value as JSON text, or none when the key is not set.
   */
  export function get(key: string): string | undefined;
  /**
   * The whole configuration object as JSON text.
   */
  export function all(): string;
}
