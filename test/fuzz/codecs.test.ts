/** Fuzzing sample: DATA/BDAT decoding, header section, addresses and parameters (properties 5 and 6). */
import { sample } from "./sample.ts";

sample(["dot-roundtrip", "data-decoder-reference", "bdat-normalizer", "header-section", "address", "parameters"]);
