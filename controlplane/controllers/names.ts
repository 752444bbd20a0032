/** Random name suffixes in Kubernetes' style (no vowels, no look-alike digits). */
const ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

export function randomSuffix(n = 5): string {
  let s = "";
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(Math.random() * ALPHABET.length)];
  return s;
}

/** `generateName` done client-side, so it works whatever the server supports. */
export function generateName(prefix: string): string {
  return `${prefix.slice(0, 57)}${randomSuffix()}`;
}
