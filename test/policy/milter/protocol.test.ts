/**
 * The milter wire format and its parsers, byte by byte, with no socket:
 * packets, option negotiation, macros, the filter's answers and reply texts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { encodePacket, MilterProtocolError, PacketReader, SMFIC_MACRO, SMFIC_MAIL, SMFIC_RCPT, SMFIC_BODY, SMFIC_EOH, SMFIC_HEADER } from "../../../src/policy/milter/protocol.ts";
import { OFFERED_ACTIONS, OFFERED_STEPS, optionNegotiation, parseNegotiation } from "../../../src/policy/milter/negotiation.ts";
import { parseAnswer, parseReplyCode } from "../../../src/policy/milter/answers.ts";
import { macroPacket } from "../../../src/policy/milter/macros.ts";
import { parseServiceAddress } from "../../../src/mail/service-address.ts";

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

test("packets: a 32-bit length (code and data), the code, NUL-terminated strings, big-endian numbers", () => {
  assert.deepEqual(
    encodePacket("M", { string: "<a@b>" }, { string: "SIZE=10" }),
    Buffer.concat([u32(15), Buffer.from("M<a@b>\0SIZE=10\0")]),
  );
  assert.deepEqual(encodePacket("C", { string: "[127.0.0.1]" }, { raw: Buffer.from("4") }, { uint16: 2525 }, { string: "127.0.0.1" }),
    Buffer.concat([u32(26), Buffer.from("C[127.0.0.1]\x004"), Buffer.from([0x09, 0xdd]), Buffer.from("127.0.0.1\0")]));
  assert.deepEqual(encodePacket("A"), Buffer.from([0, 0, 0, 1, 0x41]));
  // A NUL inside a string cannot be sent: it would end the string early.
  assert.deepEqual(encodePacket("H", { string: "a\0b" }), Buffer.concat([u32(4), Buffer.from("Hab\0")]));
});

test("option negotiation: Petrel offers protocol 6, its actions and steps; without replace body, change sender, rejected recipients", () => {
  assert.deepEqual(optionNegotiation(), Buffer.concat([u32(13), Buffer.from("O"), u32(6), u32(OFFERED_ACTIONS), u32(OFFERED_STEPS)]));
  assert.equal(OFFERED_ACTIONS & 0x02, 0, "no SMFIF_CHGBODY");
  assert.equal(OFFERED_ACTIONS & 0x40, 0, "no SMFIF_CHGFROM");
  assert.equal(OFFERED_STEPS & 0x800, 0, "no SMFIP_RCPT_REJ");
  assert.equal(OFFERED_STEPS & 0x100000, 0x100000, "SMFIP_HDR_LEADSPC");
});

test("the reader splits packets however the bytes arrive, and refuses absurd lengths", () => {
  const stream = Buffer.concat([encodePacket("c"), encodePacket("h", { string: "X-A" }, { string: "v" }), encodePacket("a")]);
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new PacketReader(1024);
    const got = [...r.feed(stream.subarray(0, cut)), ...r.feed(stream.subarray(cut))];
    assert.deepEqual(got.map((p) => [p.code, p.data.toString()]), [["c", ""], ["h", "X-A\0v\0"], ["a", ""]], `cut at ${cut}`);
  }
  assert.throws(() => new PacketReader(1024).feed(u32(0)), MilterProtocolError);
  assert.throws(() => new PacketReader(1024).feed(u32(1025)), /out of range/);
});

test("negotiation reply: the filter's actions within the offer, its steps, its macro lists by stage", () => {
  const data = Buffer.concat([
    u32(6), u32(0x01 | 0x02 | 0x10), u32(0x80 | 0x100000 | 0x800),
    u32(2), Buffer.from("{auth_authen} i {mail_addr}\0"), u32(5), Buffer.from("i\0"), u32(99), Buffer.from("x\0"),
  ]);
  const n = parseNegotiation({ code: "O", data });
  assert.equal(n.version, 6);
  assert.equal(n.actions, 0x11, "SMFIF_CHGBODY asked for but not offered: not granted");
  assert.deepEqual(n.unoffered, ["CHGBODY"]);
  assert.equal(n.steps, 0x80 | 0x100000, "SMFIP_RCPT_REJ was not offered");
  assert.deepEqual([...n.macros], [["M", ["auth_authen", "i", "mail_addr"]], ["E", ["i"]]]);
  assert.throws(() => parseNegotiation({ code: "O", data: Buffer.concat([u32(7), u32(0), u32(0)]) }), /version 7/);
  assert.throws(() => parseNegotiation({ code: "c", data: Buffer.alloc(0) }), /option negotiation/);
  assert.throws(() => parseNegotiation({ code: "O", data: u32(6) }), /too short/);
});

test("macros: the default list of a stage, only known values, braces for long names; the filter's list when it sent one", () => {
  const values = { i: "4Qabc", auth_authen: "alice@example.org", auth_type: undefined, mail_addr: "alice@example.org", j: "mx.example" };
  assert.deepEqual(
    macroPacket(SMFIC_MAIL, values, new Map()),
    encodePacket(SMFIC_MACRO, { raw: Buffer.from("M") }, { string: "i" }, { string: "4Qabc" }, { string: "{auth_authen}" }, { string: "alice@example.org" },
      { string: "{mail_addr}" }, { string: "alice@example.org" }),
  );
  assert.deepEqual(
    macroPacket(SMFIC_MAIL, values, new Map([["M", ["j", "i"]]])),
    encodePacket(SMFIC_MACRO, { raw: Buffer.from("M") }, { string: "j" }, { string: "mx.example" }, { string: "i" }, { string: "4Qabc" }),
  );
  assert.equal(macroPacket(SMFIC_RCPT, {}, new Map()), undefined, "nothing known, nothing sent");
  // Headers carry the end-of-header list, body chunks the end-of-message list (Postfix does the same).
  assert.deepEqual(macroPacket(SMFIC_HEADER, values, new Map()), encodePacket(SMFIC_MACRO, { raw: Buffer.from("L") }, { string: "i" }, { string: "4Qabc" }));
  assert.deepEqual(macroPacket(SMFIC_EOH, values, new Map([["E", ["j"]]])), encodePacket(SMFIC_MACRO, { raw: Buffer.from("N") }, { string: "i" }, { string: "4Qabc" }));
  assert.deepEqual(macroPacket(SMFIC_BODY, values, new Map([["E", ["j"]]])), encodePacket(SMFIC_MACRO, { raw: Buffer.from("B") }, { string: "j" }, { string: "mx.example" }));
});

test("reply texts: code, enhanced code and lines; a missing or mismatched enhanced code becomes X.7.1; %% is %", () => {
  assert.deepEqual(parseReplyCode("554 5.7.1 Gtube pattern"), { code: 554, status: "5.7.1", lines: ["Gtube pattern"] });
  assert.deepEqual(parseReplyCode("550-5.7.0 one\r\n550 5.7.0 two"), { code: 550, status: "5.7.0", lines: ["one", "two"] });
  assert.deepEqual(parseReplyCode("450 try later"), { code: 450, status: "4.7.1", lines: ["try later"] });
  assert.deepEqual(parseReplyCode("550 4.2.0 wrong class"), { code: 550, status: "5.7.1", lines: ["wrong class"] });
  assert.deepEqual(parseReplyCode("550 5.7.1 100%% spam"), { code: 550, status: "5.7.1", lines: ["100% spam"] });
  assert.deepEqual(parseReplyCode("421"), { code: 421, status: "4.7.1", lines: [""] });
  assert.throws(() => parseReplyCode("250 2.0.0 ok"), MilterProtocolError, "only refusals");
  assert.throws(() => parseReplyCode("550-5.7.1 a\r\n451 4.7.1 b"), /different codes/);
  assert.throws(() => parseReplyCode("spam"), /malformed/);
});

test("answers: decisions, quarantine, changes only at end of message, nothing Petrel did not offer", () => {
  assert.deepEqual(parseAnswer({ code: "r", data: Buffer.alloc(0) }, false), { kind: "decision", decision: { kind: "reject", reply: { code: 550, status: "5.7.1", lines: ["Command rejected"] } } });
  assert.deepEqual(parseAnswer({ code: "y", data: Buffer.from("451 4.7.1 greylisted\0") }, false), { kind: "decision", decision: { kind: "tempfail", reply: { code: 451, status: "4.7.1", lines: ["greylisted"] } } });
  assert.deepEqual(parseAnswer({ code: "q", data: Buffer.from("virus\0") }, true), { kind: "quarantine", reason: "virus" });
  assert.deepEqual(parseAnswer({ code: "p", data: Buffer.alloc(0) }, false), { kind: "progress" });
  assert.deepEqual(parseAnswer({ code: "i", data: Buffer.concat([u32(0), Buffer.from("DKIM-Signature\0 v=1\0")]) }, true), {
    kind: "modification", modification: { kind: "insertHeader", index: 0, name: "DKIM-Signature", value: Buffer.from(" v=1") },
  });
  assert.throws(() => parseAnswer({ code: "h", data: Buffer.from("X-A\0v\0") }, false), /before end of message/);
  assert.throws(() => parseAnswer({ code: "b", data: Buffer.from("new body") }, true), /not one Petrel offered/);
  assert.throws(() => parseAnswer({ code: "h", data: Buffer.from("X A\0v\0") }, true), /not a field name/);
  assert.throws(() => parseAnswer({ code: "h", data: Buffer.from("X-A\0v") }, true), /NUL/);
  assert.throws(() => parseAnswer({ code: "c", data: Buffer.from("x") }, false), /unexpected octets/);
});

test("addresses: inet:host:port, inet:[v6]:port, Sendmail's inet:port@host, unix:/path; anything else is refused", () => {
  assert.deepEqual(parseServiceAddress("inet:127.0.0.1:11332"), { kind: "inet", host: "127.0.0.1", port: 11332 });
  assert.deepEqual(parseServiceAddress("inet:[::1]:8891"), { kind: "inet", host: "::1", port: 8891 });
  assert.deepEqual(parseServiceAddress("inet:8891@localhost"), { kind: "inet", host: "localhost", port: 8891 });
  assert.deepEqual(parseServiceAddress("unix:/run/opendkim/opendkim.sock"), { kind: "unix", path: "/run/opendkim/opendkim.sock" });
  for (const bad of ["127.0.0.1:11332", "inet:127.0.0.1", "inet:host:0", "inet:host:70000", "unix:relative.sock", "tcp:h:1", "inet::25"]) {
    assert.equal(parseServiceAddress(bad), undefined, bad);
  }
});
