/**
 * Reading a local user's Maildir for a person (the admin API's mailbox
 * viewer): its folders (Maildir++: the inbox and every `.Name/`), the
 * messages of one folder newest first with the header fields a list shows,
 * one message parsed (postal-mime: headers, text, HTML, attachments) or
 * raw, and deleting one. A message is named by its unique base name — the
 * file name before the ":2," info, which stays the same when an IMAP server
 * moves it from new/ to cur/ or changes its flags — and is only ever looked
 * up among the names read from the directory, so no name from outside
 * reaches the file system as a path.
 */
import { createReadStream, type ReadStream } from "node:fs";
import { open, readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Address, Email } from "postal-mime";
import { maildirFolder } from "./maildir.ts";

/** postal-mime is loaded when a message is first read (the dashboard), not when the server starts. */
async function parseMime(input: Parameters<typeof import("postal-mime").default.parse>[0]): Promise<Email> {
  const { default: PostalMime } = await import("postal-mime");
  return PostalMime.parse(input);
}

export interface MaildirMessageSummary {
  /** The unique base name: the message's id in this mailbox. */
  readonly id: string;
  readonly folder: string;
  /** Still in new/: no mail client has seen it. */
  readonly new: boolean;
  /** The Maildir info flags (S seen, R replied, F flagged, T trashed, D draft). */
  readonly flags: string;
  /** Delivered (the file's time), ISO 8601. */
  readonly received: string;
  readonly size: number;
  readonly from: string;
  readonly to: string;
  readonly subject: string;
  /** The Date: field as written. */
  readonly date: string | null;
}

export interface ParsedMessage extends MaildirMessageSummary {
  readonly headers: readonly { readonly name: string; readonly value: string }[];
  readonly text: string | null;
  readonly html: string | null;
  readonly attachments: readonly { readonly index: number; readonly filename: string | null; readonly mimeType: string; readonly size: number; readonly disposition: string | null; readonly contentId: string | null }[];
}

/** Larger messages are listed and served raw, not parsed (memory per request stays bounded). */
export const PARSE_LIMIT = 64 * 1024 * 1024;
/** How much of a file is read for the list's header fields. */
const HEADER_PEEK = 32 * 1024;

export class MailboxError extends Error {
  readonly code: "not-found" | "too-large" | "invalid";
  constructor(code: MailboxError["code"], message: string) {
    super(message);
    this.code = code;
  }
}

interface Located {
  readonly path: string;
  readonly name: string;
  readonly sub: "new" | "cur";
}

/** One user's Maildir at `dir` (`<dataDir>/mail/<domain>/<user>`). */
export class MaildirReader {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** "INBOX" first, then every Maildir++ folder by name. */
  async folders(): Promise<string[]> {
    const entries = await readdir(this.dir, { withFileTypes: true }).catch(() => []);
    const names = entries.filter((e) => e.isDirectory() && e.name.startsWith(".") && maildirFolder(e.name.slice(1)) !== null).map((e) => e.name.slice(1)).sort();
    return ["INBOX", ...names];
  }

  /** The messages of `folder`, newest first, `offset`/`limit` for paging; `total` counts them all. */
  async list(folder: string, page: { offset: number; limit: number }): Promise<{ total: number; messages: MaildirMessageSummary[] }> {
    const files = await this.files(folder);
    const withTimes = await Promise.all(files.map(async (f) => ({ f, st: await stat(f.path).catch(() => null) })));
    const present = withTimes.filter((x) => x.st !== null).sort((a, b) => b.st!.mtimeMs - a.st!.mtimeMs || (a.f.name < b.f.name ? 1 : -1));
    const slice = present.slice(page.offset, page.offset + page.limit);
    const messages = await Promise.all(slice.map(async ({ f, st }) => {
      const head = await readHead(f.path);
      const email = await parseMime(head);
      return summary(f, folder, st!.mtimeMs, st!.size, email);
    }));
    return { total: present.length, messages };
  }

  /** One message, parsed. */
  async read(folder: string, id: string): Promise<ParsedMessage> {
    const f = await this.locate(folder, id);
    const st = await stat(f.path);
    if (st.size > PARSE_LIMIT) throw new MailboxError("too-large", `message ${id} is ${st.size} bytes, over the ${PARSE_LIMIT} bytes parsed here; fetch its raw source instead`);
    const email = await parseMime(await readAll(f.path));
    return {
      ...summary(f, folder, st.mtimeMs, st.size, email),
      headers: email.headers.map((h) => ({ name: h.originalKey, value: h.value })),
      text: email.text ?? null,
      html: email.html ?? null,
      attachments: email.attachments.map((a, index) => ({
        index, filename: a.filename, mimeType: a.mimeType, size: contentSize(a.content), disposition: a.disposition, contentId: a.contentId ?? null,
      })),
    };
  }

  /** One attachment's content and type. */
  async attachment(folder: string, id: string, index: number): Promise<{ filename: string | null; mimeType: string; content: Uint8Array }> {
    const email = await this.parse(folder, id);
    const a = email.attachments[index];
    if (!a) throw new MailboxError("not-found", `message ${id} has no attachment ${index}`);
    return { filename: a.filename, mimeType: a.mimeType, content: attachmentContent(a) };
  }

  /** The HTML part, with the parts it may name by Content-ID (inline images, RFC 2392). */
  async html(folder: string, id: string): Promise<{ html: string | null; related: { contentId: string; mimeType: string; content: Uint8Array }[] }> {
    const email = await this.parse(folder, id);
    const related = email.attachments.filter((a) => a.contentId).map((a) => ({ contentId: a.contentId!, mimeType: a.mimeType, content: attachmentContent(a) }));
    return { html: email.html ?? null, related };
  }

  private async parse(folder: string, id: string): Promise<Email> {
    const f = await this.locate(folder, id);
    const st = await stat(f.path);
    if (st.size > PARSE_LIMIT) throw new MailboxError("too-large", `message ${id} is too large to be parsed here`);
    return parseMime(await readAll(f.path));
  }

  /** The message as stored (LF line ends, as Maildir files have them). */
  async raw(folder: string, id: string): Promise<{ size: number; stream: ReadStream }> {
    const f = await this.locate(folder, id);
    const st = await stat(f.path);
    return { size: st.size, stream: createReadStream(f.path) };
  }

  async delete(folder: string, id: string): Promise<void> {
    const f = await this.locate(folder, id);
    await unlink(f.path);
  }

  private folderDir(folder: string): string {
    const sub = maildirFolder(folder);
    if (sub === null) throw new MailboxError("invalid", `not a folder name: ${JSON.stringify(folder)}`);
    return join(this.dir, sub);
  }

  private async files(folder: string): Promise<Located[]> {
    const dir = this.folderDir(folder);
    const out: Located[] = [];
    for (const sub of ["new", "cur"] as const) {
      for (const name of await readdir(join(dir, sub)).catch(() => [] as string[])) {
        if (!name.startsWith(".")) out.push({ path: join(dir, sub, name), name, sub });
      }
    }
    return out;
  }

  private async locate(folder: string, id: string): Promise<Located> {
    const found = (await this.files(folder)).find((f) => baseName(f.name) === id);
    if (!found) throw new MailboxError("not-found", `no message ${id} in ${folder}`);
    return found;
  }
}

/** The unique part of a Maildir file name: before the ":2," info and the ",S=" / ",W=" sizes. */
export function baseName(name: string): string {
  return name.replace(/:2,.*$/, "").replace(/(,[SW]=\d+)+$/, "");
}

function flagsOf(name: string): string {
  return /:2,([A-Za-z]*)$/.exec(name)?.[1] ?? "";
}

function summary(f: Located, folder: string, mtimeMs: number, size: number, email: Email): MaildirMessageSummary {
  return {
    id: baseName(f.name),
    folder,
    new: f.sub === "new",
    flags: flagsOf(f.name),
    received: new Date(mtimeMs).toISOString(),
    size,
    from: formatAddresses(email.from ? [email.from] : []),
    to: formatAddresses(email.to ?? []),
    subject: email.subject ?? "",
    date: email.date ?? null,
  };
}

function formatAddresses(list: readonly Address[]): string {
  const one = (a: Address): string => a.group ? `${a.name}: ${a.group.map(one).join(", ")};` : a.name ? `${a.name} <${a.address}>` : a.address;
  return list.map(one).join(", ");
}

function attachmentContent(a: Email["attachments"][number]): Uint8Array {
  return typeof a.content === "string" ? Buffer.from(a.content, a.encoding === "base64" ? "base64" : "utf8") : new Uint8Array(a.content as ArrayBuffer);
}

function contentSize(c: ArrayBuffer | Uint8Array | string): number {
  return typeof c === "string" ? Buffer.byteLength(c) : c.byteLength;
}

/** The header section (up to the first empty line, at most HEADER_PEEK bytes). */
async function readHead(path: string): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(HEADER_PEEK);
    const { bytesRead } = await fh.read(buf, 0, HEADER_PEEK, 0);
    const head = buf.subarray(0, bytesRead);
    const end = head.indexOf("\n\n");
    return end >= 0 ? head.subarray(0, end + 2) : head;
  } finally {
    await fh.close();
  }
}

async function readAll(path: string): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
