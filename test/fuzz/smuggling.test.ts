/** Fuzzing sample: SMTP smuggling variants at any chunking, both bareNewline policies (property 4). */
import { sample } from "./sample.ts";

sample(["smuggling"]);
