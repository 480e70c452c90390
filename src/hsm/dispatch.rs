//! Which HSM worker of the general lane runs which job. Every worker waits on an inbox
//! of its own. A job goes straight to the worker that has been idle longest, if any;
//! otherwise it waits in a queue that busy workers drain before they go idle. (Short
//! calls to a token that answers fast take the fast lane instead: see `pool`.)
//!
//! Why not one channel that every worker waits on: behind a token that answers in
//! milliseconds, 64 workers parked on one channel met on its waker lock at every job and
//! every park (measured on 2 cores: 3.4 context switches per call where 2 are inherent,
//! an eighth of them waits on that lock; docs/DESIGN.md, "The slow token's general
//! lane"). Here a worker parks alone and one short lock hands out the work. The idle
//! line is first in, first out: behind the 2 ms token at 32 in flight it carried 70–72%
//! of in-flight ÷ delay, against 66–69% when the worker that went idle last was woken
//! first (two runs against four; why was not profiled).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crossbeam_channel::{SendError, Sender};

/// What a worker finds in its inbox.
pub(super) enum Letter<J> {
    /// A job handed to it while it was idle; it asks for more work after it.
    Job(J),
    /// A job that must run on this very worker (dropping session copies). An idle
    /// worker leaves the idle line while it runs one ([`Dispatch::leave_idle`]).
    Own(J),
    /// The pool stops: an idle worker leaves.
    Stop,
}

/// A worker's seat: its index in the lane and the generation of the thread that holds
/// it (a replacement of a hung worker takes the seat with the next generation; the hung
/// thread, if it ever returns, finds itself replaced and leaves).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Place {
    index: usize,
    generation: u64,
}

impl Place {
    /// The seat's index.
    pub(super) fn index(self) -> usize {
        self.index
    }
}

/// What a worker does next.
pub(super) enum Next<J> {
    /// Runs this queued job.
    Run(J),
    /// Waits on its inbox: it is in the idle line.
    Idle,
    /// Leaves: the pool stops, or the worker was replaced.
    Leave,
}

struct Seat<J> {
    inbox: Sender<Letter<J>>,
    generation: u64,
}

struct State<J> {
    seats: Vec<Seat<J>>,
    /// Idle seats, the one idle longest first.
    idle: VecDeque<usize>,
    queue: VecDeque<J>,
    stopping: bool,
}

/// The workers' seats, the idle line and the queue, under one short lock.
pub(super) struct Dispatch<J> {
    state: Mutex<State<J>>,
}

impl<J> Default for Dispatch<J> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                seats: Vec::new(),
                idle: VecDeque::new(),
                queue: VecDeque::new(),
                stopping: false,
            }),
        }
    }
}

impl<J> Dispatch<J> {
    fn lock(&self) -> MutexGuard<'_, State<J>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The place a new worker takes: a new seat (`None`), or the seat at `index` after
    /// its hung worker. New seats are made one at a time (at start): two made at once
    /// would be given the same index.
    pub(super) fn place_for(&self, index: Option<usize>) -> Place {
        let s = self.lock();
        match index.and_then(|i| s.seats.get(i).map(|seat| (i, seat))) {
            Some((i, seat)) => Place {
                index: i,
                generation: seat.generation + 1,
            },
            None => Place {
                index: s.seats.len(),
                generation: 0,
            },
        }
    }

    /// Seats the worker started at `place` (from [`Self::place_for`]), which waits on
    /// `inbox`. Returns what to send it: a queued job (Run), nothing (Idle: it is in the
    /// idle line), or a stop (Leave: the pool stops).
    pub(super) fn seat(&self, place: Place, inbox: Sender<Letter<J>>) -> Next<J> {
        let mut s = self.lock();
        match s.seats.get_mut(place.index) {
            Some(seat) => {
                seat.inbox = inbox;
                seat.generation = place.generation;
                s.idle.retain(|&i| i != place.index);
            }
            None => s.seats.push(Seat {
                inbox,
                generation: place.generation,
            }),
        }
        Self::then(&mut s, place.index)
    }

    /// The seat at `index` is free: its next queued job, or Leave while stopping, or
    /// Idle (it joins the idle line).
    fn then(s: &mut State<J>, index: usize) -> Next<J> {
        if let Some(job) = s.queue.pop_front() {
            return Next::Run(job);
        }
        if s.stopping {
            return Next::Leave;
        }
        s.idle.push_back(index);
        Next::Idle
    }

    /// Hands `job` to the worker idle longest, or queues it. A worker whose thread has
    /// gone (its inbox closed) is passed over. Gives the job back once the pool stops.
    pub(super) fn submit(&self, mut job: J) -> Result<(), J> {
        loop {
            let mut s = self.lock();
            if s.stopping {
                return Err(job);
            }
            let chosen = s.idle.pop_front();
            let Some(inbox) = chosen
                .and_then(|i| s.seats.get(i))
                .map(|seat| seat.inbox.clone())
            else {
                s.queue.push_back(job);
                return Ok(());
            };
            // The wake-up (a futex call when the worker is parked) happens outside the
            // lock.
            drop(s);
            match inbox.send(Letter::Job(job)) {
                Err(SendError(Letter::Job(back))) => job = back,
                _ => return Ok(()),
            }
        }
    }

    /// The idle worker at `place` is about to run a job of its own: it leaves the idle
    /// line, so that no job is handed to it meanwhile. False when it was no longer in
    /// the line: a job is on its way to its inbox.
    pub(super) fn leave_idle(&self, place: Place) -> bool {
        let mut s = self.lock();
        let before = s.idle.len();
        s.idle.retain(|&i| i != place.index);
        s.idle.len() < before
    }

    /// The worker at `place` has finished a job: its next queued job, or Idle (it is
    /// now in the idle line), or Leave (the pool stops, or it was replaced).
    pub(super) fn next(&self, place: Place) -> Next<J> {
        let mut s = self.lock();
        if s.seats
            .get(place.index)
            .is_none_or(|x| x.generation != place.generation)
        {
            return Next::Leave;
        }
        Self::then(&mut s, place.index)
    }

    /// Refuses new jobs; a busy worker leaves once the queue is empty. The caller
    /// tells the idle ones (a [`Letter::Stop`] in every inbox).
    pub(super) fn stop(&self) {
        self.lock().stopping = true;
    }

    /// Jobs waiting for a worker.
    pub(super) fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests;
