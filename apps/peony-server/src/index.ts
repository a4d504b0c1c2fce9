/**
 * peony-server: the deployable Peony server. Exports the configuration loader and the wiring so
 * tests and custom launchers can run a server without main.ts's process handling.
 */

// Configuration
export {
  loadConfig,
  describeConfigKeys,
  describeConfig,
  helpText,
  wantsHelp,
  workerCount,
  LogLevel,
  StorageDriver,
  CONFIG_ENV,
  CONFIG_FILE_NAMES,
  serverSchema,
} from './config.ts'
export type {
  ServerConfig,
  LoadConfigInput,
  ConfigKey,
  ConfigKeyInfo,
  ResolvedKey,
  GroupConfig,
  GroupRouter,
  WorkerResourceLimits,
  ConfigModuleContext,
} from './config.ts'
export { configJsonSchema } from './config-docs.ts'
export { toMasterInput, toStorageInput, toSessionsInput } from './master-input.ts'
export type { StorageInput, SessionsInput } from './master-input.ts'
// Server
export { createPeonyServer } from './server.ts'
export type { PeonyServer, PeonyServerOptions } from './server.ts'
export { formatReadyLine, describeStorage } from './ready-line.ts'
export type { ReadyInfo } from './ready-line.ts'
// Errors
export { ConfigError, ServerErrorCode } from './errors.ts'
export type { ConfigIssue, ConfigSource } from './errors.ts'
