// Parses the HCL file named on the command line with @cdktf/hcl2json (the
// HCL parser Terraform's own library provides, built to WebAssembly) and
// prints the JSON form. Exit 1 with the parser's message on a syntax error.
"use strict";
const fs = require("fs");
const path = require("path");

const moduleDir = process.env.HCL2JSON_MODULE;
const { parse } = require(moduleDir ? path.resolve(moduleDir) : "@cdktf/hcl2json");

const file = process.argv[2];
parse(path.basename(file), fs.readFileSync(file, "utf8")).then(
  (json) => { process.stdout.write(JSON.stringify(json)); },
  (err) => { process.stderr.write(String(err && err.message ? err.message : err) + "\n"); process.exit(1); },
);
