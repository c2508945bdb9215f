/** Fuzzing sample: the session engine on random bytes and random conversations (properties 1–3). */
import { sample } from "./sample.ts";

sample(["engine-bytes", "engine-grammar"]);
