// Jest setup for the suites that run Nix: every child process inherits the tests' own Nix
// configuration (see nixConfig.ts).
import { nixEnv } from "./nixConfig";

Object.assign(process.env, nixEnv());
