/** RFC 6376 §3.1: a DKIM selector is one or more DNS labels (letters, digits, hyphens). */
const SELECTOR = /^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/i;

export function isSelector(s: string): boolean {
  return SELECTOR.test(s);
}
