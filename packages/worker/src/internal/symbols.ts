/**
 * Symbols that key the internal state of apps and blueprints. Not exported from the package
 * entry: the runtime reads the state through them, user code does not.
 */

/** Key of a PeonyApp's internal state. */
export const APP_STATE: unique symbol = Symbol('peony.app.state')
/** Key of a Blueprint's internal state. */
export const BP_STATE: unique symbol = Symbol('peony.blueprint.state')
