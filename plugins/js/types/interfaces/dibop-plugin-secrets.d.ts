declare module 'dibop:plugin/secrets@0.1.0' {
  /**
   * One credential, or none when the connection has no such credential.
   */
  export function get(name: string): string | undefined;
}
