//! Lexical scopes. A closure keeps the scope it was defined in alive through an `Rc`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::eval::value::Value;
use crate::syntax::ast::Name;

#[derive(Default)]
pub struct Env {
    vars: RefCell<HashMap<Name, Value>>,
    parent: Option<Rc<Env>>,
}

impl Env {
    pub fn root() -> Rc<Env> {
        Rc::new(Env::default())
    }

    pub fn child(parent: &Rc<Env>) -> Rc<Env> {
        Rc::new(Env {
            vars: RefCell::new(HashMap::new()),
            parent: Some(parent.clone()),
        })
    }

    pub fn define(&self, name: Name, value: Value) {
        self.vars.borrow_mut().insert(name, value);
    }

    pub fn get(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.vars.borrow().get(name) {
            return Some(v.clone());
        }
        let mut scope = self.parent.as_ref();
        while let Some(env) = scope {
            if let Some(v) = env.vars.borrow().get(name) {
                return Some(v.clone());
            }
            scope = env.parent.as_ref();
        }
        None
    }

    /// Rebind an existing variable in the nearest scope that has it; false if none does.
    pub fn assign(&self, name: &str, value: Value) -> bool {
        if let Some(slot) = self.vars.borrow_mut().get_mut(name) {
            *slot = value;
            return true;
        }
        match &self.parent {
            Some(p) => p.assign(name, value),
            None => false,
        }
    }

    /// Every name visible from here (for completion and "did you mean").
    pub fn names(&self) -> Vec<Name> {
        let mut out: Vec<Name> = self.vars.borrow().keys().cloned().collect();
        if let Some(p) = &self.parent {
            out.extend(p.names());
        }
        out.sort();
        out.dedup();
        out
    }

    /// The names and values defined in this scope alone, sorted by name.
    pub fn local_bindings(&self) -> Vec<(Name, Value)> {
        let mut out: Vec<(Name, Value)> = self
            .vars
            .borrow()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
