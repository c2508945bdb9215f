/**
 * Helper process for the concurrency tests (not a test itself): adds `count` users
 * `<prefix><i>@example.com` to the store in `dataDir`, one after the other, then prints "done".
 * Usage: node concurrent-writer.ts DATADIR PREFIX COUNT
 */
import { FileAccountStore } from "../../src/accounts/file-account-store.ts";

const [dataDir, prefix, count] = process.argv.slice(2);
const store = new FileAccountStore({ dataDir, configDomains: ["example.com"], reloadInterval: 0 });
for (let i = 0; i < Number(count); i++) await store.addUser(`${prefix}${i}@example.com`, `pw-${prefix}${i}`);
process.stdout.write("done\n");
