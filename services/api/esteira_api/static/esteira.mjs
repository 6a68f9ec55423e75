// The ES module face of esteira.js: the same code, loaded once, exported by name.
import "./esteira.js";

export const { RupturaClient, RupturaWorkerAddon, OsLookup, showOsModal, setApiKey, request } =
  window.Esteira;
export default window.Esteira;
