/** POSIX shell text. Pure: imports nothing from the project. */

/** Single-quotes a string for a POSIX shell. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
