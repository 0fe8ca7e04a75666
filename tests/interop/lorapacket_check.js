#!/usr/bin/env node
// Cross-check adapter: answers MIC / decryption / key-derivation questions with the
// independent npm implementation `lora-packet`, so the Python tests can compare.
//
// Protocol: one JSON object per line on stdin, one JSON answer per line on stdout, in order.
//   {"op": "mic", "kind": K, "phy": hex, "key": hex, "key2": hex?, "fcnt": int,
//    "conf_fcnt": int?, "tx_dr": int?, "tx_ch": int?}
//       K is up10 | up11 | down10 | down11 | join | rejoin.
//       key/key2: up10/down10 NwkSKey; up11 FNwkSIntKey + SNwkSIntKey; down11 SNwkSIntKey;
//       join AppKey/NwkKey; rejoin SNwkSIntKey (type 0/2) or JSIntKey (type 1).
//     -> {"mic": hex, "valid": bool, "fields": {...}}   (fields for data frames only)
//   {"op": "decrypt", "phy": hex, "key": hex, "fcnt": int}   FRMPayload with the given key
//     -> {"plain": hex}
//   {"op": "fopts", "phy": hex, "key": hex, "fcnt": int}     1.1 FOpts with NwkSEncKey
//     -> {"plain": hex}
//   {"op": "derive10", "app_key", "app_nonce", "net_id", "dev_nonce"}   (hex, MSB first)
//   {"op": "derive11", "nwk_key", "app_key", "join_nonce", "join_eui", "dev_nonce"}
//   {"op": "js", "nwk_key", "dev_eui"}
//     -> {"keys": {name: hex}}
// Any exception becomes {"error": message}: lora-packet refusing a frame is a verdict too.
"use strict";

const readline = require("readline");
const lp = require("lora-packet");

const hex = (s) => Buffer.from(s, "hex");

// Upper 16 bits of the 32-bit FCnt, in the order lora-packet appends them to B0 / A_i.
function fcntMsb(fcnt) {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(Math.floor(fcnt / 0x10000) & 0xffff);
  return b;
}

// LoRaWAN 1.1: ConfFCnt enters B0/B1 only when the frame's ACK bit is set. lora-packet
// also applies it to FPort-0 uplinks without ACK, so the adapter zeroes it itself.
function confFor(packet, conf) {
  return packet.getFCtrlACK() ? conf & 0xffff : 0;
}

function micFor(req, p) {
  const msb = fcntMsb(req.fcnt || 0);
  switch (req.kind) {
    case "up10":
    case "down10":
      return lp.calculateMIC(p, hex(req.key), undefined, msb);
    case "up11": {
      // lora-packet wants ConfFCnt big-endian here and swaps it into B1.
      const b = Buffer.alloc(4);
      b.writeUInt16BE(confFor(p, req.conf_fcnt || 0));
      b.writeUInt8(req.tx_dr || 0, 2);
      b.writeUInt8(req.tx_ch || 0, 3);
      return lp.calculateMIC(p, hex(req.key), hex(req.key2), msb, b);
    }
    case "down11": {
      const b = Buffer.alloc(2); // copied into B0 as is: little-endian
      b.writeUInt16LE(confFor(p, req.conf_fcnt || 0));
      return lp.calculateMIC(p, undefined, hex(req.key), msb, b);
    }
    case "join":
      return lp.calculateMIC(p, undefined, hex(req.key));
    case "rejoin":
      return p.RejoinType && p.RejoinType[0] === 1
        ? lp.calculateMIC(p, undefined, hex(req.key))
        : lp.calculateMIC(p, hex(req.key));
    default:
      throw new Error("unknown kind " + req.kind);
  }
}

function dataFields(p) {
  if (!p.isDataMessage()) return undefined;
  return {
    dev_addr: p.DevAddr.toString("hex"),
    fcnt16: p.getFCnt(),
    fport: p.getFPort(),
    fopts: p.FOpts.toString("hex"),
    frm_payload: p.FRMPayload.toString("hex"),
    ack: p.getFCtrlACK(),
    adr: p.getFCtrlADR(),
  };
}

function answer(req) {
  switch (req.op) {
    case "mic": {
      const p = lp.fromWire(hex(req.phy));
      const mic = micFor(req, p);
      return { mic: mic.toString("hex"), valid: mic.equals(p.MIC), fields: dataFields(p) };
    }
    case "decrypt": {
      const p = lp.fromWire(hex(req.phy));
      const key = hex(req.key);
      return { plain: lp.decrypt(p, key, key, fcntMsb(req.fcnt || 0)).toString("hex") };
    }
    case "fopts": {
      const p = lp.fromWire(hex(req.phy));
      return { plain: p.decryptFOpts(hex(req.key), undefined, fcntMsb(req.fcnt || 0)).toString("hex") };
    }
    case "derive10":
      return { keys: hexKeys(lp.generateSessionKeys10(hex(req.app_key), hex(req.net_id), hex(req.app_nonce), hex(req.dev_nonce))) };
    case "derive11":
      return {
        keys: hexKeys(
          lp.generateSessionKeys11(hex(req.app_key), hex(req.nwk_key), hex(req.join_eui), hex(req.join_nonce), hex(req.dev_nonce))
        ),
      };
    case "js":
      return { keys: hexKeys(lp.generateJSKeys(hex(req.nwk_key), hex(req.dev_eui))) };
    default:
      throw new Error("unknown op " + req.op);
  }
}

function hexKeys(keys) {
  const out = {};
  for (const [name, value] of Object.entries(keys)) out[name] = value.toString("hex");
  return out;
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
rl.on("line", (line) => {
  if (!line.trim()) return;
  let reply;
  try {
    reply = answer(JSON.parse(line));
  } catch (err) {
    reply = { error: String(err && err.message ? err.message : err) };
  }
  out.push(JSON.stringify(reply));
  if (out.length >= 512) process.stdout.write(out.splice(0).join("\n") + "\n");
});
rl.on("close", () => {
  if (out.length) process.stdout.write(out.join("\n") + "\n");
});
