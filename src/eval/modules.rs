//! `import`: stdlib modules and local `NAME.beb` files, each loaded once in a scope of its own.

use std::path::PathBuf;
use std::rc::Rc;

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::env::Env;
use crate::eval::interp::{Control, Eval, Interp};
use crate::eval::value::{Record, Value};
use crate::eval::{stdlib, suggest};
use crate::syntax::ast::*;

impl Interp {
    pub(super) fn import(
        &mut self,
        module: &Spanned<Name>,
        alias: Option<&Spanned<Name>>,
        all: bool,
        env: &Rc<Env>,
    ) -> Eval<()> {
        let value = self
            .load_module(&module.node)
            .map_err(|e| e.at(module.span))?;
        if all {
            if let Value::Record(r) = &value {
                for (name, v) in &r.fields {
                    env.define(name.clone(), v.clone());
                }
            }
        } else {
            let name = alias
                .map(|a| a.node.clone())
                .unwrap_or_else(|| module.node.clone());
            env.define(name, value);
        }
        Ok(())
    }

    /// A module's source: a stdlib module, else `NAME.beb` in one of the module folders.
    /// Returns (file name for diagnostics, text, path of a local file).
    pub(super) fn module_source(&self, name: &str) -> Option<(String, String, Option<PathBuf>)> {
        if let Some(text) = stdlib::source(name) {
            return Some((format!("stdlib/{name}.beb"), text.to_string(), None));
        }
        self.module_dirs.iter().find_map(|dir| {
            let path = dir.join(format!("{name}.beb"));
            let text = std::fs::read_to_string(&path).ok()?;
            Some((path.display().to_string(), text, Some(path)))
        })
    }

    /// Load (once) a module and return it as a record of its top-level definitions.
    pub fn load_module(&mut self, name: &str) -> BebResult<Value> {
        if let Some(v) = self.modules.get(name) {
            return Ok(v.clone());
        }
        if self.loading.iter().any(|m| m == name) {
            return Err(BebError::new(
                ErrorKind::Name,
                format!("circular import: {} -> {name}", self.loading.join(" -> ")),
            )
            .with_label("imported again while it is being loaded"));
        }
        let (file_name, text, local) = self.module_source(name).ok_or_else(|| {
            let known: Vec<&str> = stdlib::MODULES.iter().map(|(n, _)| *n).collect();
            let mut err = BebError::new(ErrorKind::Name, format!("there is no module `{name}`"))
                .with_label("unknown module");
            let places = format!(
                "modules: {} (stdlib), or a file {name}.beb beside the script",
                known.join(", ")
            );
            err.help = Some(match suggest::closest(name, known.iter().copied()) {
                Some(best) => format!("did you mean `{best}`? {places}"),
                None => places,
            });
            err
        })?;
        if let Some(path) = &local {
            self.note_input(path);
        }
        self.loading.push(name.to_string());
        let result = self.run_module(&file_name, &text, name);
        self.loading.pop();
        let value = result?;
        self.modules.insert(name.to_string(), value.clone());
        Ok(value)
    }

    /// Run a module's source in a scope of its own; its top-level names become a record.
    pub(super) fn run_module(
        &mut self,
        file_name: &str,
        text: &str,
        module: &str,
    ) -> BebResult<Value> {
        let file = self.add_module_source(file_name, text, module);
        let program = self.parse(file).map_err(BebError::from_syntax)?;
        let scope = Env::child(&self.builtin_env);
        self.exec_block(&program, &scope)
            .map_err(Control::outside_loop)?;
        let record = Record {
            fields: scope.local_bindings(),
        };
        Ok(Value::Record(Rc::new(record)))
    }
}
